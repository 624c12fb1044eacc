import {Flags} from '@oclif/core'

import type {PublicSandbox} from '../../client/client.js'
import {DaemonCommand} from '../../client/command.js'
import {renderSandboxTable} from '../../client/render.js'

export default class SandboxLs extends DaemonCommand {
  static override summary = 'List sandboxes'
  static override aliases = ['sandbox list']
  static override examples = ['<%= config.bin %> sandbox ls', '<%= config.bin %> sandbox ls --all --json']
  static override enableJsonFlag = true
  static override flags = {
    all: Flags.boolean({char: 'a', summary: 'Include stopped sandboxes'}),
  }

  async run(): Promise<PublicSandbox[]> {
    const {flags} = await this.parse(SandboxLs)
    const sandboxes = await (await this.daemon(flags.host)).listSandboxes(flags.all)
    this.log(sandboxes.length === 0 ? (flags.all ? 'no sandboxes' : 'no active sandboxes') : renderSandboxTable(sandboxes))
    return sandboxes
  }
}
