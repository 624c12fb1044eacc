import {resolve} from 'node:path'

import {openChangesArchive} from '../workspace/archive.js'
import {checkAgainstHost, conflictError, riskyLines, riskyRefusal, writeChanges} from '../workspace/apply.js'
import type {ChangeRecord} from '../workspace/changes.js'
import type {DaemonClient} from './client.js'

export interface ApplyOptions {
  /** Apply here instead of the sandbox's workspace directory. */
  directory?: string
  /** Write risky changes without asking. */
  force: boolean
  /** Asked, with the risky changes (terminal-safe lines), when there are some and no --force; true writes them. */
  confirm: (risky: string[]) => Promise<boolean>
}

export interface ApplyOutcome {
  /** The directory written to. */
  target: string
  workspaceSource: string
  written: ChangeRecord[]
  /** Changes the host already had. */
  alreadyThere: number
}

/**
 * `cleanroom workspace apply`: reads the sandbox's changes once (the list and
 * every new version, from one archive), decides each path by content against
 * the target directory, asks about risky paths, then writes them all or none.
 */
export async function applyWorkspace(client: DaemonClient, sandboxId: string, options: ApplyOptions): Promise<ApplyOutcome> {
  const archive = await client.workspaceArchive(sandboxId)
  try {
    const {manifest, contents} = await openChangesArchive(archive)
    const target = options.directory ? resolve(options.directory) : manifest.workspace_source
    const outcome: ApplyOutcome = {target, workspaceSource: manifest.workspace_source, written: [], alreadyThere: 0}
    if (manifest.changes.length === 0) return outcome
    const check = await checkAgainstHost(target, manifest)
    if (check.conflicts.length > 0) throw conflictError(sandboxId, target, check.conflicts)
    outcome.alreadyThere = check.alreadyThere.length
    if (check.toWrite.length === 0) return outcome
    // Asked before anything is staged: a "no" leaves the directory exactly as it was.
    const risky = riskyLines(check.toWrite)
    if (risky.length > 0 && !options.force && !(await options.confirm(risky))) throw riskyRefusal(sandboxId, check.toWrite)
    await writeChanges(target, manifest, check.toWrite, contents())
    outcome.written = check.toWrite
    return outcome
  } finally {
    archive.destroy()
  }
}
