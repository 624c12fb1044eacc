import {Args} from '@oclif/core'

import {consentFlags, PluginCommand, verboseFlag} from '../../plugins/command.js'
import {installPlugin} from '../../plugins/install.js'
import {registryHas} from '../../plugins/npm.js'
import {parsePluginSource} from '../../plugins/source.js'

export default class PluginsInstall extends PluginCommand {
  static override aliases = ['plugins:add']
  static override summary = 'Install an agent plugin, after showing what its agent may reach and copy'
  static override description = `Fetches the plugin with npm (no install script of it or of any dependency ever runs), shows the agents it adds with the hosts they may reach and the host files they copy, then installs the same bytes. Refused unless allowed: a plugin that runs code in cleanroom (oclif commands or hooks, main/exports, dependencies; --allow-code), a plugin that replaces an agent that already exists (--replace), and a tarball that is not one unambiguous package. A bare name is tried as @cleanroom/agent-<name> first.`
  static override examples = [
    '<%= config.bin %> <%= command.id %> @acme/cleanroom-agent-acme',
    '<%= config.bin %> <%= command.id %> file:///tmp/acme-cleanroom-agent-acme-1.0.0.tgz',
    '<%= config.bin %> <%= command.id %> @acme/cleanroom-agent-codex --replace',
  ]
  static override args = {
    plugin: Args.string({required: true, description: 'npm name[@tag], file: URL of a tarball or directory, git URL, or GitHub owner/repo'}),
  }
  static override flags = {...consentFlags, verbose: verboseFlag}

  async run(): Promise<void> {
    const {args, flags} = await this.parse(PluginsInstall)
    const context = await this.pluginContext(flags.verbose)
    const {scope, pluginPrefix} = this.config.pjson.oclif
    const friendly = scope ? {scope, prefix: pluginPrefix ?? 'plugin', exists: registryHas} : undefined
    const source = await parsePluginSource(args.plugin, {cwd: process.cwd(), friendly})
    await installPlugin(context, source, {allowCode: flags['allow-code'], replace: flags.replace})
  }
}
