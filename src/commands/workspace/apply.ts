import {Args, Flags, ux} from '@oclif/core'
import {createInterface} from 'node:readline/promises'
import {resolve} from 'node:path'

import {DaemonCommand} from '../../client/command.js'
import {applyWorkspacePatch, checkWorkspacePatch, riskyChanges, riskyRefusal, type WorkspacePatch} from '../../workspace/apply.js'

export default class WorkspaceApply extends DaemonCommand {
  static override summary = "Apply a sandbox's workspace changes to the host repository"
  static override description = `Applies what \`cleanroom workspace diff\` shows to the directory the sandbox was made from (or --directory). Nothing is written when the host changed a file the sandbox changed too, or when the patch does not apply cleanly (workspace_conflict). Changes to risky paths (CI config, git hooks, shell rc files, agent and editor config, cleanroom.yaml: see docs/api.md) are listed and need --force, or a "yes" when run in a terminal.`
  static override examples = ['<%= config.bin %> workspace apply cr_01JD…', '<%= config.bin %> workspace apply cr_01JD… --force']
  static override args = {id: Args.string({required: true, description: 'Sandbox id (cr_…)'})}
  static override flags = {
    force: Flags.boolean({summary: 'Also write changes to risky paths without asking'}),
    directory: Flags.string({char: 'c', summary: "Apply here instead of the sandbox's workspace directory", helpValue: 'DIR'}),
  }

  async run(): Promise<void> {
    const {args, flags} = await this.parse(WorkspaceApply)
    const client = await this.daemon(flags.host)
    ux.action.start('reading the sandbox\'s changes', undefined, {stdout: false})
    const summary = await client.workspaceChanges(args.id, true)
    ux.action.stop()
    const plan: WorkspacePatch = {sandboxId: args.id, repo: flags.directory ? resolve(flags.directory) : summary.workspace_source, patch: summary.patch ?? '', changes: summary.changes}
    if (plan.changes.length === 0) {
      this.log(`nothing to apply: sandbox ${args.id} changed nothing in ${summary.workspace_source}`)
      return
    }
    await checkWorkspacePatch(plan)
    const risky = riskyChanges(plan)
    if (risky.length > 0 && !flags.force && !(await this.confirm(risky))) throw riskyRefusal(plan, risky)
    await applyWorkspacePatch(plan)
    const counts = (['added', 'modified', 'deleted', 'mode'] as const)
      .map((kind) => [kind, plan.changes.filter((change) => change.change === kind).length] as const)
      .filter(([, count]) => count > 0)
      .map(([kind, count]) => `${count} ${kind === 'mode' ? 'mode changed' : kind}`)
    this.log(`applied ${plan.changes.length} ${plan.changes.length === 1 ? 'file' : 'files'} to ${plan.repo} (${counts.join(', ')})`)
  }

  /** Asks on a terminal only: a pipe or CI never says yes. */
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
