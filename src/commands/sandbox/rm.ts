import {Args} from '@oclif/core'

import type {PublicSandbox} from '../../client/client.js'
import {DaemonCommand} from '../../client/command.js'

export default class SandboxRm extends DaemonCommand {
  static override summary = 'Remove sandboxes: stop their processes and delete their files'
  static override aliases = ['sandbox terminate']
  static override strict = false
  static override examples = ['<%= config.bin %> sandbox rm cr_01JD…', '<%= config.bin %> sandbox rm $(<%= config.bin %> sandbox ls --json | jq -r ".[].sandbox_id")']
  static override enableJsonFlag = true
  static override args = {id: Args.string({required: true, description: 'Sandbox ids (cr_…), one or more'})}

  async run(): Promise<PublicSandbox[]> {
    const {argv, flags} = await this.parse(SandboxRm)
    const client = await this.daemon(flags.host)
    const removed: PublicSandbox[] = []
    for (const id of argv as string[]) {
      removed.push(await client.removeSandbox(id))
      this.log(`removed ${id}`)
    }
    return removed
  }
}
