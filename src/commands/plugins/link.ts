import {Args} from '@oclif/core'

import {consentFlags, PluginCommand} from '../../plugins/command.js'
import {linkPlugin} from '../../plugins/link.js'

export default class PluginsLink extends PluginCommand {
  static override summary = 'Link a plugin directory, after showing what its agent may reach and copy'
  static override description = `For writing a plugin: cleanroom loads it from the directory, so edits apply at once. It shows the same preview and refuses the same things as "plugins install" (--allow-code, --replace); no npm runs and no dependency is installed. A linked plugin that declares code must be linked again with --allow-code after each change to its package.json.`
  static override examples = ['<%= config.bin %> <%= command.id %> ./cleanroom-agent-acme']
  static override args = {path: Args.string({default: '.', description: 'Directory of the plugin (holding its package.json)'})}
  static override flags = {...consentFlags}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(PluginsLink)
    const plugin = await linkPlugin(await this.pluginContext(false), args.path, process.cwd(), {allowCode: flags['allow-code'], replace: flags.replace})
    process.stderr.write(`${this.config.name}: linked ${plugin.name}@${plugin.version}\n`)
  }
}
