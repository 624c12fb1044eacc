import {Args, Flags, ux} from '@oclif/core'
import {createInterface} from 'node:readline/promises'

import {DaemonCommand} from '../../client/command.js'
import {applyWorkspace} from '../../client/workspace.js'
import {changeCounts} from '../../workspace/apply.js'

export default class WorkspaceApply extends DaemonCommand {
  static override summary = "Apply a sandbox's workspace changes to the host repository"
  static override description = `Writes what \`cleanroom workspace diff\` shows into the directory the sandbox was made from (or --chdir), all of it or nothing. Each path is decided by content: the sandbox's version replaces the host's only where the host still has what the sandbox started from; where the host changed it since, nothing is written (workspace_conflict). git is not run to write anything: no hooks, filters, LFS or fsmonitor. Changes to risky paths (CI config, git and package-manager config, agent and editor config, cleanroom.yaml, anything git would take for a repository, symlinks leading outside the repository: see docs/api.md) are listed and need --force, or a "yes" when run in a terminal.`
  static override examples = ['<%= config.bin %> workspace apply cr_01JD…', '<%= config.bin %> workspace apply cr_01JD… --force']
  static override args = {id: Args.string({required: true, description: 'Sandbox id (cr_…)'})}
  static override flags = {
    force: Flags.boolean({summary: 'Also write changes to risky paths without asking'}),
    chdir: Flags.string({char: 'c', summary: "Apply here instead of the sandbox's workspace directory", helpValue: 'DIR', aliases: ['directory']}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(WorkspaceApply)
    const client = await this.daemon(flags.host)
    ux.action.start("reading the sandbox's changes", undefined, {stdout: false})
    const outcome = await applyWorkspace(client, args.id, {
      directory: flags.chdir,
      force: flags.force,
      confirm: async (risky) => {
        ux.action.stop()
        return this.confirm(risky)
      },
    }).finally(() => ux.action.stop())
    if (outcome.written.length === 0) {
      const why = outcome.alreadyThere > 0 ? `${outcome.target} already has every change of sandbox ${args.id}` : `sandbox ${args.id} changed nothing in ${outcome.workspaceSource}`
      this.log(`nothing to apply: ${why}`)
      return
    }
    const count = outcome.written.length
    this.log(`applied ${count} ${count === 1 ? 'file' : 'files'} to ${outcome.target} (${changeCounts(outcome.written)})`)
  }

  /** Asks on a terminal only: a pipe or CI never says yes. The lines are terminal-safe already. */
  private async confirm(risky: string[]): Promise<boolean> {
    if (!process.stdin.isTTY) return false
    process.stderr.write(`The sandbox changed these risky paths:\n${risky.map((line) => `  ${line}`).join('\n')}\n`)
    const prompt = createInterface({input: process.stdin, output: process.stderr})
    try {
      return /^y(es)?$/i.test((await prompt.question('Apply them too? [y/N] ')).trim())
    } finally {
      prompt.close()
    }
  }
}
