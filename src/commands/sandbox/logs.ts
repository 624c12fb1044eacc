import {Args, Flags} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {renderAuditEvent} from '../../client/render.js'
import {CleanroomError} from '../../errors/index.js'
import {visibleJson} from '../../util/visible.js'

export default class SandboxLogs extends DaemonCommand {
  static override summary = "Show a sandbox's egress audit log: every connection it tried, allowed or denied"
  static override description = `One line per attempt: time, ALLOW or DENY, the destination (and the address dialled), the reason code, and for allowed connections the bytes each way and the duration. --json prints the raw JSON lines (fields: time, sandbox_id, host, port, resolved_ip, action, reason, bytes_up, bytes_down, duration_ms, protocol). See docs/security.md for the reason codes.`
  static override examples = [
    '<%= config.bin %> sandbox logs cr_01JD… --egress',
    '<%= config.bin %> sandbox logs cr_01JD… --egress --follow',
    '<%= config.bin %> sandbox logs cr_01JD… --egress --json | jq -r "select(.action==\\"deny\\") | .host"',
  ]
  static override args = {id: Args.string({required: true, description: 'Sandbox id (cr_…)'})}
  static override flags = {
    egress: Flags.boolean({summary: 'Show the egress audit log (the only log today)'}),
    follow: Flags.boolean({char: 'f', summary: 'Keep printing new lines as they are written'}),
    json: Flags.boolean({summary: 'Print the audit events as JSON lines'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(SandboxLogs)
    if (!flags.egress) throw new CleanroomError('usage', 'say which log: --egress', {suggestions: [`cleanroom sandbox logs ${args.id} --egress`]})
    const client = await this.daemon(flags.host)
    for await (const event of client.egressEvents(args.id, flags.follow)) {
      this.log(flags.json ? visibleJson(JSON.stringify(event)) : renderAuditEvent(event))
    }
  }
}
