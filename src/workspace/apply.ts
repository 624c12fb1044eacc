import {CleanroomError} from '../errors/index.js'
import {DirectoryHandle} from '../util/dir-handle.js'
import {withStopSignalsHeld} from '../util/signal-hold.js'
import {visibleName} from '../util/visible.js'
import type {ArchivedContent, ChangesManifest} from './archive.js'
import type {ChangeRecord} from './changes.js'
import {sameEntry, TreeReader} from './entry.js'
import {assessRisks, riskInput} from './risky.js'
import {WriteBack} from './write-back.js'

/** What applying a sandbox's changes to a directory would do, decided by content. */
export interface ApplyCheck {
  /** The host still has what the sandbox started from: the sandbox's version goes in. */
  toWrite: ChangeRecord[]
  /** The host already has the sandbox's version. */
  alreadyThere: ChangeRecord[]
  /** `path (why)` for each path the host changed since the sandbox started from it. */
  conflicts: string[]
}

/**
 * Compares each changed path of `target` (read without following symlinks) with
 * the version the sandbox started from and the one it has now: the sandbox's
 * version may replace only what it started from (its base), so a host edit is
 * never overwritten, and a file the host restored to its base (`git checkout`)
 * takes the change again. A path whose parent the host turned into a file or a
 * symlink conflicts too, unless the change deletes that file.
 */
export async function checkAgainstHost(target: string, manifest: ChangesManifest): Promise<ApplyCheck> {
  const reader = new TreeReader(await DirectoryHandle.open(target), manifest.object_format)
  const check: ApplyCheck = {toWrite: [], alreadyThere: [], conflicts: []}
  try {
    for (const record of manifest.changes) {
      const host = await reader.state(record.path)
      if (sameEntry(host, record.sandbox)) check.alreadyThere.push(record)
      else if (record.base !== 'unknown' && sameEntry(host, record.base)) check.toWrite.push(record)
      else check.conflicts.push(`${visibleName(record.path)} (${conflictReason(record, host === null)})`)
    }
    await reassessRisks(reader, check.toWrite)
    const deleted = new Set(check.toWrite.filter((record) => record.sandbox === null).map((record) => record.path))
    for (const record of check.toWrite) {
      if (record.sandbox === null) continue
      const blocker = await blockingParent(reader, record.path, deleted)
      if (blocker) check.conflicts.push(`${visibleName(record.path)} (${visibleName(blocker.path)} is a ${blocker.kind} on the host)`)
    }
  } finally {
    await reader.close()
  }
  return check
}

/**
 * The risks as they are in the directory written to: the daemon judged them
 * against the sandbox's workspace source, and a symlink that stays inside that
 * tree may lead out of another (`--directory`) or of the same one changed since.
 * A path is only ever added to the risky ones here, never taken off.
 */
async function reassessRisks(reader: TreeReader, records: ChangeRecord[]): Promise<void> {
  const risks = await assessRisks(records.map(riskInput), (path) => reader.entry(path))
  for (const record of records) {
    const risk = risks.get(record.path)
    if (record.risky || risk === undefined) continue
    record.risky = true
    record.risk = risk
  }
}

function conflictReason(record: ChangeRecord, absent: boolean): string {
  if (record.base === 'unknown') return 'changed on the host since the sandbox started from it, and what it held before is not known'
  return absent ? 'deleted on the host since the sandbox started from it' : 'changed on the host since the sandbox started from it'
}

/** The first parent of `path` that is a file or symlink on the host and is not deleted by the change itself. */
async function blockingParent(reader: TreeReader, path: string, deleted: Set<string>): Promise<{path: string; kind: string} | undefined> {
  const parts = path.split('/')
  for (let depth = 1; depth < parts.length; depth++) {
    const parent = parts.slice(0, depth).join('/')
    const found = await reader.kind(parent)
    if (!found || deleted.has(parent)) return undefined
    if (found.kind !== 'directory') return {path: parent, kind: found.kind}
  }
  return undefined
}

export function conflictError(sandboxId: string, target: string, conflicts: string[]): CleanroomError {
  return new CleanroomError('workspace_conflict', `the host changed files the sandbox changed too, in ${target}; nothing was applied:\n${conflicts.join('\n')}`, {
    details: {files: conflicts},
    suggestions: [
      'Commit, stash or undo your changes to those files (git checkout -- <file> restores what the sandbox started from), then apply again',
      `See the sandbox's changes with: cleanroom workspace diff ${sandboxId}`,
    ],
  })
}

/** The risky changes among `records`, one terminal-safe line each: `path (change: why)`. */
export function riskyLines(records: readonly ChangeRecord[]): string[] {
  return records.filter((record) => record.risky).map((record) => `${visibleName(record.path)} (${record.change}: ${record.risk ?? 'risky'})`)
}

export function riskyRefusal(sandboxId: string, records: readonly ChangeRecord[]): CleanroomError {
  return new CleanroomError(
    'workspace_risky_paths',
    `the sandbox changed paths that can run code on the host or steer CI, git and agents; nothing was applied:\n${riskyLines(records).join('\n')}`,
    {
      details: {paths: records.filter((record) => record.risky).map((record) => record.path)},
      suggestions: [`Review them with: cleanroom workspace diff ${sandboxId}`, `Then apply everything with: cleanroom workspace apply ${sandboxId} --force`],
    },
  )
}

/**
 * Writes `toWrite` into `target`, all or nothing: the sandbox's versions come
 * from the archive's `contents`, each checked against the blob id the manifest
 * names (a sandbox that rewrote a file since the manifest was made gets nothing
 * written).
 */
export async function writeChanges(target: string, manifest: ChangesManifest, toWrite: readonly ChangeRecord[], contents: AsyncIterable<ArchivedContent>): Promise<void> {
  const wanted = new Map(toWrite.filter((record) => record.sandbox !== null).map((record) => [record.path, record]))
  // Ctrl-C while staging stops before anything is written; once the commit starts, it ends (whole, or rolled back) first.
  await withStopSignalsHeld(async (received) => {
    const stopIfAsked = () => {
      const signal = received()
      if (signal) throw new CleanroomError('interrupted', `interrupted by ${signal}: nothing was applied`)
    }
    const writeBack = await WriteBack.begin(target, manifest.object_format)
    try {
      let staged = 0
      for await (const entry of contents) {
        stopIfAsked()
        const record = wanted.get(entry.path)
        if (!record) continue
        if ((entry.type === 'symlink') !== (record.sandbox!.mode === '120000')) throw incomplete(`${visibleName(entry.path)} is not the kind of entry the list of changes says`)
        if (entry.type === 'symlink') await writeBack.stageSymlink(record, entry.linkname ?? '')
        else await writeBack.stageFile(record, entry.content)
        staged++
      }
      stopIfAsked()
      if (staged !== wanted.size) throw incomplete('some files are missing from it')
      await writeBack.commit(toWrite)
    } finally {
      await writeBack.finish()
    }
  })
}

function incomplete(why: string): CleanroomError {
  return new CleanroomError('backend_failed', `the daemon's archive of the sandbox's changes is incomplete: ${why}; nothing was applied`)
}

/** `3 added, 1 modified`: the counts of each kind of change. */
export function changeCounts(records: readonly ChangeRecord[]): string {
  return (['added', 'modified', 'deleted', 'mode'] as const)
    .map((kind) => [kind, records.filter((record) => record.change === kind).length] as const)
    .filter(([, count]) => count > 0)
    .map(([kind, count]) => `${count} ${kind === 'mode' ? 'mode changed' : kind}`)
    .join(', ')
}
