import {Args, Flags} from '@oclif/core'
import {pipeline} from 'node:stream/promises'

import type {WorkspaceChanges} from '../../client/client.js'
import {DaemonCommand} from '../../client/command.js'
import {visibleName, visibleStream, visibleText} from '../../util/visible.js'

const MARKS = {added: 'A', modified: 'M', deleted: 'D', mode: 'm'} as const

export default class WorkspaceDiff extends DaemonCommand {
  static override summary = "Show what a sandbox changed under /workspace, as a git-style patch"
  static override description = `Compares the sandbox's /workspace with the host directory it was made from. Binary files and files over 4 MiB are included as GIT binary patches, so the output applies with git apply; changes under .git and files the repository ignores are left out and only counted. On a terminal, characters that would act on it (escape sequences in file names or contents) are shown escaped; piped, the patch is exact. --stat lists the paths (A added, M modified, D deleted, m mode only; "risky" paths need --force to be applied, and say why; "conflict" ones were changed on the host since the sandbox started from them); --json prints that list as JSON.`
  static override examples = [
    '<%= config.bin %> workspace diff cr_01JD…',
    '<%= config.bin %> workspace diff cr_01JD… --stat',
    '<%= config.bin %> workspace diff cr_01JD… > sandbox.patch && git apply --check sandbox.patch',
  ]
  static override enableJsonFlag = true
  static override args = {id: Args.string({required: true, description: 'Sandbox id (cr_…)'})}
  static override flags = {
    stat: Flags.boolean({summary: 'List the changed paths instead of the patch'}),
  }

  async run(): Promise<WorkspaceChanges | undefined> {
    const {args, flags} = await this.parse(WorkspaceDiff)
    const client = await this.daemon(flags.host)
    if (!flags.stat && !this.jsonEnabled()) {
      const patch = await client.workspacePatch(args.id)
      await (process.stdout.isTTY ? pipeline(patch, visibleStream(), process.stdout, {end: false}) : pipeline(patch, process.stdout, {end: false}))
      return undefined
    }
    const summary = await client.workspaceChanges(args.id)
    for (const change of summary.changes) {
      const notes = [change.risky ? `risky: ${visibleText(change.risk ?? '')}` : '', change.conflict ? 'conflict' : ''].filter((note) => note !== '')
      this.log(`${MARKS[change.change]} ${visibleName(change.path)}${notes.length > 0 ? `  (${notes.join(', ')})` : ''}`)
    }
    const left = [summary.git_changes > 0 ? `${summary.git_changes} under .git` : '', summary.ignored_changes > 0 ? `${summary.ignored_changes} ignored by the repository` : '']
    this.log(`${summary.changes.length} changed ${summary.changes.length === 1 ? 'path' : 'paths'} in ${summary.workspace_source}${left.some((x) => x) ? `; left out: ${left.filter((x) => x).join(', ')}` : ''}`)
    return summary
  }
}
