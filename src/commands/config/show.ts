import {stringify} from 'yaml'

import {BaseCommand} from '../../base-command.js'
import {configPathFlag, resolveConfigPath} from '../../config/flags.js'
import {loadRuntimeConfig} from '../../config/load.js'
import type {RuntimeConfig} from '../../config/schema.js'

export default class ConfigShow extends BaseCommand {
  static override summary = 'Show the runtime config in force, defaults filled in'
  static override examples = ['<%= config.bin %> config show', '<%= config.bin %> config show --json']
  static override enableJsonFlag = true
  static override flags = {path: configPathFlag}

  async run(): Promise<{path: string; exists: boolean; config: RuntimeConfig}> {
    const {flags} = await this.parse(ConfigShow)
    const loaded = await loadRuntimeConfig(resolveConfigPath(flags.path))
    this.log(`# ${loaded.exists ? loaded.path : `${loaded.path} (not found: defaults)`}`)
    this.log(stringify(loaded.config, {lineWidth: 0}).trimEnd())
    return loaded
  }
}
