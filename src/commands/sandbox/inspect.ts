import {Args} from '@oclif/core'

import type {PublicSandbox} from '../../client/client.js'
import {DaemonCommand} from '../../client/command.js'
import {renderSandbox} from '../../client/render.js'

export default class SandboxInspect extends DaemonCommand {
  static override summary = 'Show one sandbox: status, backend, policy, workspace'
  static override examples = ['<%= config.bin %> sandbox inspect cr_01JD…', '<%= config.bin %> sandbox inspect cr_01JD… --json']
  static override enableJsonFlag = true
  static override args = {id: Args.string({required: true, description: 'Sandbox id (cr_…)'})}

  async run(): Promise<PublicSandbox> {
    const {args, flags} = await this.parse(SandboxInspect)
    const sandbox = await (await this.daemon(flags.host)).inspectSandbox(args.id)
    this.log(renderSandbox(sandbox))
    return sandbox
  }
}
