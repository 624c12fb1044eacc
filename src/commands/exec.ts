import {Flags} from '@oclif/core'

import {commandAfterDashDashHint, DaemonCommand, sessionFlags} from '../client/command.js'
import {execCommand} from '../client/exec-command.js'

export default class Exec extends DaemonCommand {
  static override summary = 'Run a command in a sandbox and exit with its exit code'
  static override description = `Without --sandbox-id a sandbox is created from the repository's policy, the command runs in /workspace, and the sandbox is removed afterwards unless --keep. Output streams as it is produced (stdout to stdout, stderr to stderr); stdin is forwarded. The first Ctrl-C is sent to the command; the second detaches and exits 130. Put the command after --.`
  static override strict = false
  static override usageTail = '-- CMD...'
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
    process.exitCode = await execCommand(flags, this.argv, argv as string[], this.cli)
  }

  protected override usageHint(): string {
    return commandAfterDashDashHint('exec', this.argv, {...Exec.baseFlags, ...Exec.flags})
  }
}
