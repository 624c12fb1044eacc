import {Flags} from '@oclif/core'

import {commandAfterDashDashHint, DaemonCommand, sessionFlags} from '../client/command.js'
import {parseEnvFlags} from '../client/env.js'
import {afterDashDash} from '../client/passthrough.js'
import {runSession} from '../client/session.js'
import type {BackendName} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'

export default class Console extends DaemonCommand {
  static override summary = 'Open an interactive shell (or another command) in a sandbox'
  static override description = `A real terminal inside the sandbox: it has your terminal's size and follows resizes, Ctrl-C reaches the program in the foreground, and your terminal is restored on exit even if the sandbox dies. Without --sandbox-id a new sandbox is created for the repository and removed afterwards unless --keep.`
  static override strict = false
  static override usageTail = '[-- CMD...]'
  static override examples = [
    '<%= config.bin %> console',
    '<%= config.bin %> console --keep',
    '<%= config.bin %> console --sandbox-id cr_01JD… -- bash -l',
  ]
  static override flags = {
    'sandbox-id': Flags.string({summary: 'Open the console in this existing sandbox', helpValue: 'ID'}),
    ...sessionFlags,
  }

  async run(): Promise<void> {
    const {flags} = await this.parse(Console)
    if (!process.stdin.isTTY || !process.stdout.isTTY) {
      throw new CleanroomError('usage', 'console needs a terminal on stdin and stdout', {
        suggestions: ['Run it from an interactive terminal, or use: cleanroom exec -- <command>'],
      })
    }
    const passthrough = afterDashDash(this.argv)
    const client = await this.daemon(flags.host)
    const outcome = await runSession(client, {
      sandboxId: flags['sandbox-id'],
      keep: flags.keep,
      allowAll: flags['dangerously-allow-all'],
      dir: flags.chdir,
      backend: flags.backend as BackendName | undefined,
      ...(flags.image === undefined ? {} : {image: flags.image}),
      argv: passthrough.length > 0 ? passthrough : ['sh'],
      env: {...parseEnvFlags(flags.env ?? []), TERM: process.env.TERM ?? 'xterm-256color'},
      tty: true,
      terminal: {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr},
    })
    process.exitCode = outcome.exitCode
  }

  protected override usageHint(): string {
    return commandAfterDashDashHint('console', this.argv, {...Console.baseFlags, ...Console.flags})
  }
}
