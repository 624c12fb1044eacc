import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {EntryState, GitMode, ObjectFormat} from './entry.js'
import {type GitUser, ownerToRunAs, runGit} from '../util/git.js'

/**
 * What a sandbox's workspace started from, noted when the sandbox is created:
 * the repository's HEAD and which paths differed from it then. A path that did
 * not differ started as HEAD has it (or absent); nothing is copied or hashed,
 * so noting it costs one `git status`, not time in proportion to the tree.
 */
export interface WorkspaceBase {
  /** HEAD's commit; null when the workspace is not in a git repository or has no commit yet. */
  head: string | null
  /** Where the workspace is in the repository: '' at the top, else `sub/dir/`. */
  prefix: string
  object_format: ObjectFormat
  /** Paths (relative to the workspace) modified, added, deleted or untracked at create; one ending in / covers what is below it. */
  dirty: string[]
}

/** The file in the sandbox's state dir that holds it. */
export const WORKSPACE_BASE_FILE = 'workspace-base.json'

const LS_TREE_BATCH = 500

/**
 * Notes the workspace's base in `stateDir` (called while the sandbox is
 * provisioned). A directory git cannot read (not a repository, no git) notes
 * nothing: creating the sandbox never fails for it.
 */
export async function recordWorkspaceBase(workspace: string, stateDir: string): Promise<void> {
  const user = await ownerToRunAs(workspace)
  const results = await Promise.all([
    // The format and prefix, then HEAD's commit: exit 1 after the first two when HEAD has none yet.
    runGit(workspace, ['rev-parse', '--show-object-format', '--show-prefix', '--verify', '--quiet', 'HEAD^{commit}'], {user}),
    runGit(workspace, ['--literal-pathspecs', 'status', '--porcelain=v1', '-z', '--untracked-files=all', '--no-renames', '--ignore-submodules=all', '--', '.'], {user}),
  ]).catch(() => undefined)
  if (!results) return
  const [layout, status] = results
  const lines = layout.stdout.toString('utf8').split('\n')
  if (![0, 1].includes(layout.code ?? -1) || lines.length < 3 || status.code !== 0) return
  const [format = 'sha1', prefix = '', commit = ''] = lines
  const dirty = status.stdout
    .toString('utf8')
    .split('\0')
    .filter((entry) => entry.length > 3)
    .map((entry) => entry.slice(3))
    .filter((path) => path.startsWith(prefix))
    .map((path) => path.slice(prefix.length))
  const base: WorkspaceBase = {
    head: layout.code === 0 && commit !== '' ? commit : null,
    prefix,
    object_format: format === 'sha256' ? 'sha256' : 'sha1',
    dirty,
  }
  await writeFile(join(stateDir, WORKSPACE_BASE_FILE), JSON.stringify(base), {mode: 0o600})
}

/** The base noted for a sandbox; undefined for a sandbox made without one (no repository, or made by an older daemon). */
export async function readWorkspaceBase(stateDir: string): Promise<WorkspaceBase | undefined> {
  const text = await readFile(join(stateDir, WORKSPACE_BASE_FILE), 'utf8').catch(() => undefined)
  return text === undefined ? undefined : (JSON.parse(text) as WorkspaceBase)
}

/** Whether `path` differed from HEAD (or was untracked) when the sandbox was created. */
export function dirtyAtCreate(base: WorkspaceBase, path: string): boolean {
  return base.dirty.some((dirty) => dirty === path || (dirty.endsWith('/') && path.startsWith(dirty)))
}

/** Answers "what did this path hold in HEAD when the sandbox was created?" for paths clean then. */
export class CommittedBase {
  private readonly dirtyFiles: Set<string>
  private readonly dirtyDirs: string[]

  constructor(
    private readonly repo: string,
    private readonly base: WorkspaceBase,
    private readonly user: GitUser | undefined,
  ) {
    this.dirtyFiles = new Set(base.dirty.filter((path) => !path.endsWith('/')))
    this.dirtyDirs = base.dirty.filter((path) => path.endsWith('/'))
  }

  /** True when `path` was as HEAD has it when the sandbox was created. */
  cleanAtCreate(path: string): boolean {
    return this.base.head !== null && !this.dirtyFiles.has(path) && !this.dirtyDirs.some((dir) => path.startsWith(dir))
  }

  /**
   * HEAD's entry for each path (null: HEAD has no file there, or a directory).
   * A submodule, or anything else than a file, a symlink or a directory, is left
   * out: its base is not known. (A path inside a submodule is not in HEAD's
   * tree at all, so it reads as null, and a host change to it as a conflict.)
   */
  async entries(paths: readonly string[]): Promise<Map<string, EntryState | null>> {
    const found = new Map<string, EntryState | null>()
    if (this.base.head === null) return found
    for (let start = 0; start < paths.length; start += LS_TREE_BATCH) {
      const batch = paths.slice(start, start + LS_TREE_BATCH)
      const listing = await runGit(this.repo, ['--literal-pathspecs', 'ls-tree', '-z', '--full-tree', '--long', this.base.head, '--', ...batch.map((path) => this.base.prefix + path)], {user: this.user})
      if (listing.code !== 0) return found
      for (const path of batch) found.set(path, null)
      for (const line of listing.stdout.toString('utf8').split('\0')) {
        const match = /^(\d+) (\w+) ([0-9a-f]+) +(\d+|-)\t(.*)$/s.exec(line)
        if (!match) continue
        const [, mode, type, oid, size, fullPath] = match
        const path = fullPath!.slice(this.base.prefix.length)
        if (type === 'blob' && (mode === '100644' || mode === '100755' || mode === '120000')) found.set(path, {mode: mode as GitMode, oid: oid!, size: Number(size)})
        // A directory holds no file at its own path; a submodule's commit says nothing of the files in it.
        else if (type !== 'tree') found.delete(path)
      }
    }
    return found
  }
}
