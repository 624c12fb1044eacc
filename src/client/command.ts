import {Flags} from '@oclif/core'
import {join} from 'node:path'

import {type FlagShape, splitAgentArgv} from '../agents/argv.js'
import {BaseCommand} from '../base-command.js'
import {BACKENDS} from '../config/schema.js'
import {policyDirFlag} from '../policy/flags.js'
import {pasteable} from '../util/pasteable.js'
import type {DaemonClient} from './client.js'
import {type CliInfo, connectDaemon} from './connect.js'

/** Flags and helpers of every command that talks to the daemon. */
export abstract class DaemonCommand extends BaseCommand {
  static override baseFlags = {
    host: Flags.string({
      summary: 'Daemon address (default: $CLEANROOM_HOST, else the per-user socket)',
      helpValue: 'unix:///path',
      helpGroup: 'DAEMON',
    }),
  }

  /** This CLI as the daemon sees it: the script that starts a daemon, and the version it must have. */
  protected get cli(): CliInfo {
    return {runScript: join(this.config.root, 'bin', 'run.js'), version: this.config.version}
  }

  /** A client of the daemon, started on demand. */
  protected async daemon(host: string | undefined): Promise<DaemonClient> {
    return connectDaemon({host, ...this.cli})
  }
}

export const backendFlag = Flags.string({
  summary: 'Backend for a new sandbox (default: default_backend of the runtime config)',
  options: [...BACKENDS],
})

export const imageFlag = Flags.string({
  summary: "Image for a new sandbox instead of the policy's: a tag is resolved to its digest, which is shown",
  helpValue: 'REF',
})

export const allowAllFlag = Flags.boolean({
  summary: 'Let a new sandbox reach any host (still logged; deny rules, host addresses and cloud metadata stay blocked)',
})

/** The flags `exec` and `console` share: what a new sandbox is made from, and what the command gets. */
export const sessionFlags = {
  keep: Flags.boolean({summary: 'Keep the new sandbox afterwards and print its id on stderr'}),
  chdir: policyDirFlag,
  env: Flags.string({char: 'e', summary: 'Set KEY=VALUE, or pass KEY from this environment', helpValue: 'KEY[=VAL]', multiple: true}),
  backend: backendFlag,
  image: imageFlag,
  'dangerously-allow-all': allowAllFlag,
}

/** For exec and console: an unknown flag is most often the command's own, given without `--` before it. */
export function commandAfterDashDashHint(command: string, argv: readonly string[], flags: Record<string, FlagShape>): string {
  // The first word that is not one of cleanroom's flags starts the command, as it would after `--`.
  const line = splitAgentArgv(argv, flags)
  const ours = line.name === undefined ? line.cleanroom : line.cleanroom.slice(0, -1)
  const words = line.name === undefined ? ['CMD'] : [line.name, ...line.afterName]
  return `Put the command after --: ${pasteable(['cleanroom', command, ...ours, '--', ...words])}`
}
