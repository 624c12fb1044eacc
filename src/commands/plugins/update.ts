import {consentFlags, PluginCommand, verboseFlag} from '../../plugins/command.js'
import {updatePlugins} from '../../plugins/update.js'

export default class PluginsUpdate extends PluginCommand {
  static override summary = 'Install each installed plugin again from its source, showing what it asks for'
  static override description = `Each plugin installed with "plugins install" is fetched again from where it came from (its npm tag, file: URL or git URL) and goes through the same preview and checks: a new version that declares code needs --allow-code, one that takes an agent name it did not have before needs --replace. Linked plugins are their directories and are left as they are.`
  static override examples = ['<%= config.bin %> <%= command.id %>']
  static override flags = {...consentFlags, verbose: verboseFlag}

  async run(): Promise<void> {
    const {flags} = await this.parse(PluginsUpdate)
    const updated = await updatePlugins(await this.pluginContext(flags.verbose), process.cwd(), {allowCode: flags['allow-code'], replace: flags.replace})
    if (updated.length === 0) process.stderr.write(`${this.config.name}: no installed plugin to update\n`)
  }
}
