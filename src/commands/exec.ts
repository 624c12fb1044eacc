import {Flags} from '@oclif/core'

import {splitPassthrough} from '../agents/script.js'
import {DaemonCommand, sessionFlags} from '../client/command.js'
import {parseEnvFlags} from '../client/env.js'
import {runSession} from '../client/session.js'
import {CleanroomError} from '../errors/index.js'

export default class Exec extends DaemonCommand {
  static override summary = 'Run a command in a sandbox and exit with its exit code'
  static override description = `Without --sandbox-id a sandbox is created from the repository's policy, the command runs in /workspace, and the sandbox is removed afterwards unless --keep. Output streams as it is produced (stdout to stdout, stderr to stderr); stdin is forwarded. The first Ctrl-C is sent to the command; the second detaches and exits 130. Put the command after --.`
  static override strict = false
  static override examples = [
    '<%= config.bin %> exec -- npm test',
    'printf abc | <%= config.bin %> exec -- cat',
    '<%= config.bin %> exec --keep -e CI=1 -- make build',
    '<%= config.bin %> exec --sandbox-id cr_01JD… -- ls -la',
  ]
  static override flags = {
    'sandbox-id': Flags.string({summary: 'Run in this existing sandbox instead of a new one', helpValue: 'ID'}),
    ...sessionFlags,
    tty: Flags.boolean({char: 't', summary: 'Give the command a terminal'}),
  }

  async run(): Promise<void> {
    const {flags, argv} = await this.parse(Exec)
    const {passthrough} = splitPassthrough(this.argv)
    const command = this.argv.includes('--') ? passthrough : (argv as string[])
    if (command.length === 0) throw new CleanroomError('usage', 'no command given', {suggestions: ['Put the command after --: cleanroom exec -- npm test']})

    const client = await this.daemon(flags.host)
    const outcome = await runSession(client, {
      sandboxId: flags['sandbox-id'],
      keep: flags.keep,
      allowAll: flags['dangerously-allow-all'],
      dir: flags.chdir,
      backend: await this.backendFor(flags.backend),
      argv: command,
      env: parseEnvFlags(flags.env ?? []),
      tty: flags.tty,
      terminal: {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr},
    })
    process.exitCode = outcome.exitCode
  }
}
