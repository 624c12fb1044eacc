import {Flags} from '@oclif/core'

import {loadBuiltinAgents} from '../../agents/load.js'
import {BaseCommand} from '../../base-command.js'
import {configPathFlag, resolveConfigPath} from '../../config/flags.js'
import {renderConfigTemplate} from '../../config/template.js'
import {writeRuntimeConfig} from '../../config/write.js'

export default class ConfigInit extends BaseCommand {
  static override summary = 'Write a commented runtime config with the defaults'
  static override description = `Writes config.yaml with every setting at its default and a comment explaining it, and the built-in agents' defaults commented out under agents: so they can be copied and changed. An existing file is kept unless --force is given.`
  static override examples = [
    '<%= config.bin %> config init',
    '<%= config.bin %> config init --path ./config.yaml --force',
  ]
  static override enableJsonFlag = true
  static override flags = {
    path: configPathFlag,
    force: Flags.boolean({summary: 'Overwrite an existing file'}),
  }

  async run(): Promise<{path: string}> {
    const {flags} = await this.parse(ConfigInit)
    const path = resolveConfigPath(flags.path)
    const builtins = [...loadBuiltinAgents(this.config).agents.values()].map((agent) => agent.spec)
    await writeRuntimeConfig(path, renderConfigTemplate(builtins), flags.force)
    this.log(`runtime config written: ${path}`)
    return {path}
  }
}
