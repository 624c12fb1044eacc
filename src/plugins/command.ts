import {Flags, ux} from '@oclif/core'
import {homedir} from 'node:os'

import {loadAgentRegistry} from '../agents/load.js'
import {BaseCommand} from '../base-command.js'
import type {PluginContext} from './install.js'

/** What the user may allow a plugin beyond being data; the flags of `plugins install|link|update`. */
export const consentFlags = {
  'allow-code': Flags.boolean({
    summary: 'Also accept a plugin that runs code in cleanroom (oclif commands or hooks, dependencies); its install scripts still never run',
  }),
  replace: Flags.boolean({summary: 'Let the plugin replace an agent that already exists (a built-in one, another plugin\'s or one of the runtime config)'}),
}

export const verboseFlag = Flags.boolean({char: 'v', summary: "Show npm's output"})

/** The plugins commands that cleanroom replaces: they show what a plugin asks for and refuse what was not allowed. */
export abstract class PluginCommand extends BaseCommand {
  /** What the plugin library needs of this CLI, with progress on stderr. */
  protected async pluginContext(verbose: boolean): Promise<PluginContext> {
    const shipped = this.config
      .getPluginsList()
      .filter((plugin) => plugin.type === 'core' || plugin.type === 'dev')
      .map((plugin) => plugin.name)
    return {
      dataDir: this.config.dataDir,
      cliName: this.config.name,
      shipped: new Set(shipped),
      registry: await loadAgentRegistry(this.config),
      hostHome: homedir(),
      verbose,
      progress: {
        start: (text) => ux.action.start(`${this.config.name}: ${text}`),
        stop: (text) => ux.action.stop(text),
        show: (lines) => {
          for (const line of lines) process.stderr.write(`${this.config.name}: ${line}\n`)
        },
      },
    }
  }

  protected override async catch(error: Error & {code?: string; oclif?: {exit?: number}}): Promise<unknown> {
    if (ux.action.running) ux.action.stop('failed')
    return super.catch(error)
  }
}
