import {createHash} from 'node:crypto'
import type {Stats} from 'node:fs'
import {posix} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {DirectoryHandle, openDirectory} from '../util/dir-handle.js'
import type {TreeEntry} from '../util/link-target.js'
import {visibleName} from '../util/visible.js'

/** git's modes for what a workspace change can hold. */
export type GitMode = '100644' | '100755' | '120000'

/** The hash git names its objects with in a repository. */
export type ObjectFormat = 'sha1' | 'sha256'

/** One path's content as git would store it: its mode, its blob id and size (a symlink's blob is its target). */
export interface EntryState {
  mode: GitMode
  oid: string
  size: number
}

/** What a path holds when looked at without following symlinks. */
export type PathKind = 'file' | 'symlink' | 'directory' | 'other'

const READ_CHUNK = 256 << 10

export function sameEntry(a: EntryState | null, b: EntryState | null): boolean {
  return a === b || (a !== null && b !== null && a.mode === b.mode && a.oid === b.oid)
}

export function zeroOid(format: ObjectFormat): string {
  return '0'.repeat(format === 'sha1' ? 40 : 64)
}

/** The id git gives a blob of these bytes. */
export function blobOid(format: ObjectFormat, content: Buffer): string {
  return createHash(format).update(`blob ${content.length}\0`).update(content).digest('hex')
}

/**
 * Reads a directory tree (an overlay layer, a repository) by relative paths
 * through directory handles, one component at a time, never following a symlink:
 * whatever is swapped in while it reads, only the tree's own entries are seen.
 */
export class TreeReader {
  /** The handles of the last directory read and its ancestors. */
  private cached: {path: string; handle: DirectoryHandle} | undefined

  constructor(
    private readonly root: DirectoryHandle,
    private readonly format: ObjectFormat,
  ) {}

  get rootHandle(): DirectoryHandle {
    return this.root
  }

  /** What `path` is, and its stats; undefined when nothing is there or a parent is not a directory. */
  async kind(path: string): Promise<{kind: PathKind; stats: Stats} | undefined> {
    const dir = await this.parent(path)
    const stats = dir ? await dir.entry(posix.basename(path)) : undefined
    if (!stats) return undefined
    const kind: PathKind = stats.isFile() ? 'file' : stats.isSymbolicLink() ? 'symlink' : stats.isDirectory() ? 'directory' : 'other'
    return {kind, stats}
  }

  /** What `path` is as the symlink checks walk a tree (src/util/link-target.ts). */
  async entry(path: string): Promise<TreeEntry> {
    const found = await this.kind(path)
    if (!found) return undefined
    if (found.kind === 'symlink') return {symlink: (await this.linkTarget(path)) ?? ''}
    return found.kind === 'directory' ? 'directory' : 'other'
  }

  /** A symlink's target; undefined when `path` is not a symlink. */
  async linkTarget(path: string): Promise<string | undefined> {
    const found = await this.kind(path)
    if (found?.kind !== 'symlink') return undefined
    return (await this.parent(path))!.readlink(posix.basename(path))
  }

  /** The file or symlink at `path` as git would store it; null for anything else or nothing. */
  async state(path: string): Promise<EntryState | null> {
    const found = await this.kind(path)
    if (found?.kind === 'symlink') return this.linkState(path)
    if (found?.kind !== 'file') return null
    const hash = createHash(this.format)
    let size = 0
    for await (const chunk of this.read(path)) {
      if (size === 0) hash.update(`blob ${chunk.declaredSize}\0`)
      hash.update(chunk.bytes)
      size = chunk.declaredSize
    }
    if (size === 0) hash.update('blob 0\0')
    const mode: GitMode = (found.stats.mode & 0o100) !== 0 ? '100755' : '100644'
    return {mode, oid: hash.digest('hex'), size}
  }

  /**
   * The bytes of `path`, which must still be what `expected` says: a file the
   * sandbox rewrote since it was hashed is an error, never a patch or an archive
   * that differs from the list of changes.
   */
  async *content(path: string, expected: EntryState): AsyncGenerator<Buffer> {
    const hash = createHash(this.format).update(`blob ${expected.size}\0`)
    if (expected.mode === '120000') {
      const target = Buffer.from((await this.linkTarget(path)) ?? '')
      hash.update(target)
      if (hash.digest('hex') !== expected.oid) throw changedWhileRead(path)
      yield target
      return
    }
    let size = 0
    for await (const chunk of this.read(path)) {
      if (chunk.declaredSize !== expected.size) throw changedWhileRead(path)
      size += chunk.bytes.length
      hash.update(chunk.bytes)
      if (size === expected.size && hash.copy().digest('hex') !== expected.oid) throw changedWhileRead(path)
      yield chunk.bytes
    }
    if (size !== expected.size || (size === 0 && hash.digest('hex') !== expected.oid)) throw changedWhileRead(path)
  }

  /** All of `path`'s bytes (for a text diff: the caller bounds the size). */
  async readAll(path: string, expected: EntryState): Promise<Buffer> {
    const chunks: Buffer[] = []
    for await (const chunk of this.content(path, expected)) chunks.push(chunk)
    return Buffer.concat(chunks)
  }

  async close(): Promise<void> {
    if (this.cached && this.cached.handle !== this.root) await this.cached.handle.close()
    this.cached = undefined
    await this.root.close()
  }

  private async linkState(path: string): Promise<EntryState> {
    const target = (await this.linkTarget(path)) ?? ''
    const bytes = Buffer.from(target)
    if (target.includes('\uFFFD')) {
      throw new CleanroomError('workspace_unsupported_entry', `${visibleName(path)}: a symlink whose target is not UTF-8 text cannot be brought back`, {
        suggestions: ['Remove or re-create that symlink in the sandbox'],
      })
    }
    return {mode: '120000', oid: blobOid(this.format, bytes), size: bytes.length}
  }

  /**
   * The regular file's bytes, up to the size it had when opened (a file still
   * growing is read as it was then); a file that shrank is an error.
   */
  private async *read(path: string): AsyncGenerator<{bytes: Buffer; declaredSize: number}> {
    const dir = await this.parent(path)
    const opened = dir ? await dir.readFile(posix.basename(path)) : undefined
    if (!opened) throw changedWhileRead(path)
    const {file, stats} = opened
    try {
      let offset = 0
      while (offset < stats.size) {
        const buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, stats.size - offset))
        const {bytesRead} = await file.read(buffer, 0, buffer.length, offset)
        if (bytesRead === 0) throw changedWhileRead(path)
        offset += bytesRead
        yield {bytes: buffer.subarray(0, bytesRead), declaredSize: stats.size}
      }
    } finally {
      await file.close()
    }
  }

  /** The directory holding `path`, opened without following symlinks; undefined when it is not a real directory there. */
  private async parent(path: string): Promise<DirectoryHandle | undefined> {
    const dir = posix.dirname(path)
    if (dir === '.') return this.root
    if (this.cached?.path === dir) return this.cached.handle
    if (this.cached && this.cached.handle !== this.root) await this.cached.handle.close()
    this.cached = undefined
    const handle = await openDirectory(this.root, dir).catch((error: unknown) => {
      if ((error as CleanroomError).code === 'path_escapes_root') return undefined
      throw error
    })
    if (handle) this.cached = {path: dir, handle}
    return handle
  }
}

/** The error for a sandbox file or directory that changed between two looks at it. */
export function changedWhileRead(path: string): CleanroomError {
  return new CleanroomError('workspace_changed', `${visibleName(path)} changed while it was read`, {
    suggestions: ['Let the sandbox finish writing its files, then try again'],
  })
}
