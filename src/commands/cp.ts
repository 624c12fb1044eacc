import {Args} from '@oclif/core'

import {DaemonCommand} from '../client/command.js'
import {copy} from '../client/copy.js'

export default class Cp extends DaemonCommand {
  static override summary = 'Copy files or directories between the host and a sandbox'
  static override description = `One side is <sandbox-id>:/absolute/path. Modes are kept; files copied into a sandbox belong to the sandbox user. A destination ending in / or naming an existing directory receives the source under its own name. Copying out never writes outside the destination: archive entries that climb out are refused, nothing is written through a symlink (one already at the destination is replaced, not followed), setuid and setgid bits are dropped, and a symlink is kept only when, followed, it stays inside the copy.`
  static override examples = [
    '<%= config.bin %> cp ./fixtures cr_01JD…:/workspace/fixtures',
    '<%= config.bin %> cp cr_01JD…:/workspace/coverage ./coverage',
  ]
  static override args = {
    source: Args.string({required: true, description: 'Host path or <sandbox-id>:/path'}),
    destination: Args.string({required: true, description: 'Host path or <sandbox-id>:/path'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(Cp)
    await copy(await this.daemon(flags.host), args.source, args.destination)
  }
}
