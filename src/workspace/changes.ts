import {Readable} from 'node:stream'

import {CleanroomError} from '../errors/index.js'
import {DirectoryHandle} from '../util/dir-handle.js'
import {CommittedBase, dirtyAtCreate, type WorkspaceBase} from './base.js'
import {type EntryState, type ObjectFormat, sameEntry, TreeReader} from './entry.js'
import {ownerToRunAs, runGit} from '../util/git.js'
import {scanOverlay} from './overlay.js'
import {patchOfPath} from './patch-writer.js'
import {assessRisks, riskInput} from './risky.js'
import {changesArchive} from './archive.js'

export type ChangeKind = 'added' | 'modified' | 'deleted' | 'mode'

/** One path the sandbox changed, as the API lists it. */
export interface WorkspaceChange {
  path: string
  change: ChangeKind
  /** Needs --force to be applied; `risk` says why (src/workspace/risky.ts). */
  risky: boolean
  /** The host's file is no longer what the sandbox started from: applying would undo the host's change. */
  conflict: boolean
  risk?: string
}

/** A change with the three versions apply decides by: what the sandbox started from, what the host has, what the sandbox has. */
export interface ChangeRecord extends WorkspaceChange {
  /** null: nothing; 'unknown': the host changed the path since and what it held before is not known. */
  base: EntryState | null | 'unknown'
  host: EntryState | null
  sandbox: EntryState | null
  /** The sandbox's symlink target. */
  link?: string
}

export interface WorkspaceSummary {
  changes: WorkspaceChange[]
  /** Entries changed under `.git`: never brought back. */
  git_changes: number
  /** Files the sandbox wrote that the host repository ignores (node_modules/, build output): never brought back. */
  ignored_changes: number
}

export interface WorkspaceSource {
  /** The overlay's upper layer. */
  upper: string
  /** The host directory the workspace was made from (the overlay's lower layer, live). */
  lower: string
  /** Paths hidden from the sandbox at create. */
  hidden: readonly string[]
  /** Files the backend put in the upper layer at create, untouched since (the redacted .git/config): not changes. */
  provided?: readonly string[]
  /** When the sandbox was created (ms). */
  createdAt: number
  base?: WorkspaceBase
}

/**
 * What a sandbox changed in its workspace, read once: every path is compared by
 * content (git blob ids) on the sandbox's side, the host's side and the base the
 * sandbox started from. Both layers are read through directory handles without
 * following symlinks. The patch and the archive are produced from this reading
 * as they are sent, each file re-read and checked against it.
 */
export class WorkspaceChangeSet {
  private constructor(
    /** The host directory the workspace was made from. */
    readonly workspaceSource: string,
    readonly records: ChangeRecord[],
    readonly gitChanges: number,
    readonly ignoredChanges: number,
    readonly format: ObjectFormat,
    private readonly upper: TreeReader,
    private readonly lower: TreeReader,
  ) {}

  static async read(source: WorkspaceSource): Promise<WorkspaceChangeSet> {
    const format = source.base?.object_format ?? 'sha1'
    const upper = new TreeReader(await DirectoryHandle.open(source.upper), format)
    const lower = new TreeReader(await DirectoryHandle.open(source.lower), format)
    try {
      const scan = await scanOverlay({upper: upper.rootHandle, lower: lower.rootHandle, hidden: source.hidden, provided: source.provided ?? [], createdAt: source.createdAt})
      const user = await ownerToRunAs(source.lower)
      const ignored = await ignoredByHost(source.lower, [...scan.touched.keys()], user)
      const committed = source.base?.head ? new CommittedBase(source.lower, source.base, user) : undefined
      const records: ChangeRecord[] = []
      const needCommitted: ChangeRecord[] = []
      for (const path of [...scan.touched.keys()].sort()) {
        if (ignored.has(path)) continue
        const sandbox = await upper.state(path)
        const hostKind = await lower.kind(path)
        const host = hostKind?.kind === 'file' || hostKind?.kind === 'symlink' ? await lower.state(path) : null
        if (sameEntry(host, sandbox)) continue
        const record: ChangeRecord = {path, change: changeKind(host, sandbox), risky: false, conflict: false, base: 'unknown', host, sandbox}
        // The host has not touched the path since the sandbox first wrote it: the host's file is what the sandbox started from.
        if (host && hostKind!.stats.ctimeMs <= scan.touched.get(path)!) record.base = host
        else if (committed?.cleanAtCreate(path)) needCommitted.push(record)
        // Nothing there now, and nothing noted there at create (or no note at all): the sandbox added it.
        else if (!host && !(source.base && dirtyAtCreate(source.base, path))) record.base = null
        if (sandbox?.mode === '120000') record.link = await upper.linkTarget(path)
        records.push(record)
      }
      const headEntries = committed ? await committed.entries(needCommitted.map((record) => record.path)) : new Map<string, EntryState | null>()
      for (const record of needCommitted) record.base = headEntries.has(record.path) ? headEntries.get(record.path)! : 'unknown'
      // A path the sandbox holds as it started is the host's change alone: not the sandbox's to bring back.
      const changed = records.filter((record) => record.base === 'unknown' || !sameEntry(record.base, record.sandbox))
      const risks = await assessRisks(
        changed.map(riskInput),
        (path) => lower.entry(path),
      )
      for (const record of changed) {
        record.conflict = record.base === 'unknown' || !sameEntry(record.host, record.base)
        const risk = risks.get(record.path)
        record.risky = risk !== undefined
        if (risk !== undefined) record.risk = risk
      }
      return new WorkspaceChangeSet(source.lower, changed, scan.gitChanges, ignored.size, format, upper, lower)
    } catch (error) {
      await upper.close()
      await lower.close()
      throw error
    }
  }

  summary(): WorkspaceSummary {
    const changes = this.records.map(({path, change, risky, conflict, risk}) => ({path, change, risky, conflict, ...(risk === undefined ? {} : {risk})}))
    return {changes, git_changes: this.gitChanges, ignored_changes: this.ignoredChanges}
  }

  /** The git-style patch of every change, host side against sandbox side, produced as it is read. */
  patch(): Readable {
    const {records, format, upper, lower} = this
    const read = {host: (path: string, state: EntryState) => lower.content(path, state), sandbox: (path: string, state: EntryState) => upper.content(path, state)}
    return Readable.from(
      (async function* () {
        for (const record of records) yield* patchOfPath(record, read, format)
      })(),
      {objectMode: false},
    )
  }

  /** A tar of the changes for `workspace apply`: `changes.json` first, then the sandbox's version of each path it did not delete. */
  archive(): Readable {
    const about = {workspace_source: this.workspaceSource, object_format: this.format, git_changes: this.gitChanges, ignored_changes: this.ignoredChanges}
    return changesArchive(this.records, about, (path, state) => this.upper.content(path, state))
  }

  async close(): Promise<void> {
    await this.upper.close()
    await this.lower.close()
  }
}

function changeKind(host: EntryState | null, sandbox: EntryState | null): ChangeKind {
  if (!host) return 'added'
  if (!sandbox) return 'deleted'
  return host.oid === sandbox.oid ? 'mode' : 'modified'
}

/** Which of `paths` the host repository's ignore rules cover; none when it is not a git repository. */
async function ignoredByHost(repo: string, paths: string[], user: Awaited<ReturnType<typeof ownerToRunAs>>): Promise<Set<string>> {
  if (paths.length === 0) return new Set()
  const result = await runGit(repo, ['check-ignore', '-z', '--stdin'], {input: paths.map((path) => `${path}\0`).join(''), user})
  // 1: none ignored; 128 and "not a git repository": nothing to ignore by.
  if (result.code === 1 || (result.code === 128 && /not a git repository/i.test(result.stderr))) return new Set()
  if (result.code !== 0) throw new CleanroomError('backend_failed', `git check-ignore failed in ${repo}: ${result.stderr.trim()}`)
  return new Set(result.stdout.toString('utf8').split('\0').filter((path) => path !== ''))
}
