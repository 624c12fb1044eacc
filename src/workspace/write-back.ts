import {createHash, randomBytes} from 'node:crypto'
import {rm} from 'node:fs/promises'
import {join, posix} from 'node:path'

import {CleanroomError, messageOf} from '../errors/index.js'
import {DirectoryHandle, openDirectory} from '../util/dir-handle.js'
import {visibleName} from '../util/visible.js'
import type {EntryState, ObjectFormat} from './entry.js'

/** One path to write back: the sandbox's version, or null to delete the host's. */
export interface WriteBackPath {
  path: string
  sandbox: EntryState | null
}

/** How to undo one step of the commit. */
type UndoStep =
  | {kind: 'moved-aside'; path: string; aside: string}
  | {kind: 'put-in-place'; path: string; staged: string}
  | {kind: 'made-directory'; path: string}
  | {kind: 'removed-directory'; path: string; mode: number}

/** Handles kept open while committing, at most: re-opened (without following symlinks) past that. */
const OPEN_DIRECTORIES = 128

/**
 * Writes a set of changes into a directory all together or not at all. Every
 * new version is first staged in a private directory at the top of the target
 * (same filesystem, so moving it into place is a rename) and checked against the
 * blob id it must have; then the commit moves the host's versions aside and the
 * staged ones in, logging each step; any failure undoes the steps in reverse.
 * Every directory is opened without following symlinks, so nothing is written
 * through one; a file gets mode 755 or 644 (less the umask), never a set-id bit.
 */
export class WriteBack {
  private readonly staged = new Map<string, string>()
  private readonly undo: UndoStep[] = []
  private readonly open = new Map<string, DirectoryHandle>()
  private counter = 0

  private constructor(
    private readonly root: DirectoryHandle,
    private readonly stageName: string,
    private readonly stage: DirectoryHandle,
    private readonly format: ObjectFormat,
  ) {}

  static async begin(target: string, format: ObjectFormat): Promise<WriteBack> {
    const root = await DirectoryHandle.open(target)
    const stageName = `.cleanroom-apply-${randomBytes(6).toString('hex')}`
    try {
      const {directory} = await root.makeDirectory(stageName, 0o700)
      return new WriteBack(root, stageName, directory, format)
    } catch (error) {
      await root.close()
      throw error
    }
  }

  /** Stages the sandbox's version of `change.path` from `content`, refusing bytes that are not the blob the change names. */
  async stageFile(change: WriteBackPath, content: AsyncIterable<Buffer>): Promise<void> {
    const expected = change.sandbox!
    const name = `n${this.counter++}`
    const file = await this.stage.createFile(name, expected.mode === '100755' ? 0o755 : 0o644)
    const hash = createHash(this.format).update(`blob ${expected.size}\0`)
    let size = 0
    try {
      for await (const chunk of content) {
        size += chunk.length
        hash.update(chunk)
        await file.write(chunk)
      }
    } finally {
      await file.close()
    }
    if (size !== expected.size || hash.digest('hex') !== expected.oid) throw changedInTransit(change.path)
    this.staged.set(change.path, name)
  }

  async stageSymlink(change: WriteBackPath, target: string): Promise<void> {
    const expected = change.sandbox!
    const bytes = Buffer.from(target)
    if (createHash(this.format).update(`blob ${bytes.length}\0`).update(bytes).digest('hex') !== expected.oid) throw changedInTransit(change.path)
    const name = `n${this.counter++}`
    await this.stage.symlink(target, name)
    this.staged.set(change.path, name)
  }

  /**
   * Moves everything into place: deletions first (deepest first), then each
   * write (its directories made as needed, a directory in its way removed when
   * the deletions emptied it). On failure every step is undone and the error
   * says nothing was applied; should undoing fail too, it says what is left.
   */
  async commit(changes: readonly WriteBackPath[]): Promise<void> {
    const deletions = changes.filter((change) => change.sandbox === null).sort((a, b) => b.path.split('/').length - a.path.split('/').length)
    const writes = changes.filter((change) => change.sandbox !== null)
    try {
      for (const change of deletions) await this.moveAside(change.path)
      for (const change of writes) await this.putInPlace(change.path)
    } catch (error) {
      const left = await this.rollback()
      const detail = left.length === 0 ? 'nothing was applied' : `undoing it failed too, so these are left as the failed attempt made them:\n${left.join('\n')}`
      throw new CleanroomError('workspace_apply_failed', `writing the changes into ${this.root.path} failed (${visibleName(messageOf(error))}); ${detail}`, {
        cause: error,
        suggestions: ['Fix what stopped the write (a read-only or full filesystem, a mount inside the repository), then apply again'],
      })
    }
    for (const change of deletions) await this.removeEmptiedDirectories(posix.dirname(change.path))
  }

  /** Removes the staging directory (with the host's old versions, once committed). */
  async finish(): Promise<void> {
    for (const handle of this.open.values()) await handle.close()
    this.open.clear()
    await this.stage.close()
    await rm(join(this.root.path, this.stageName), {recursive: true, force: true}).catch(() => undefined)
    await this.root.close()
  }

  private async moveAside(path: string): Promise<void> {
    const {dir, name} = await this.parentOf(path, false)
    const aside = `o${this.counter++}`
    await dir.rename(name, this.stage, aside)
    this.undo.push({kind: 'moved-aside', path, aside})
  }

  private async putInPlace(path: string): Promise<void> {
    const {dir, name} = await this.parentOf(path, true)
    const existing = await dir.entry(name)
    if (existing?.isDirectory()) {
      await dir.rmdir(name)
      this.undo.push({kind: 'removed-directory', path, mode: existing.mode & 0o7777})
    } else if (existing) {
      await this.moveAside(path)
    }
    const staged = this.staged.get(path)!
    await this.stage.rename(staged, dir, name)
    this.undo.push({kind: 'put-in-place', path, staged})
  }

  /** Undoes the commit's steps in reverse; returns the paths it could not put back. */
  private async rollback(): Promise<string[]> {
    const left: string[] = []
    for (const step of [...this.undo].reverse()) {
      try {
        if (step.kind === 'moved-aside') {
          const {dir, name} = await this.parentOf(step.path, true)
          await this.stage.rename(step.aside, dir, name)
        } else if (step.kind === 'put-in-place') {
          const {dir, name} = await this.parentOf(step.path, false)
          await dir.rename(name, this.stage, step.staged)
        } else if (step.kind === 'made-directory') {
          const {dir, name} = await this.parentOf(step.path, false)
          await dir.rmdir(name)
          this.forget(step.path)
        } else {
          const {dir, name} = await this.parentOf(step.path, true)
          const {directory} = await dir.makeDirectory(name, step.mode)
          await directory.chmod(step.mode)
          await directory.close()
        }
      } catch {
        left.push(visibleName(step.path))
      }
    }
    return left
  }

  /** git apply's habit: a directory left empty by a deletion goes too (best effort, after the commit). */
  private async removeEmptiedDirectories(dir: string): Promise<void> {
    for (let path = dir; path !== '.' && path !== ''; path = posix.dirname(path)) {
      const {dir: parent, name} = await this.parentOf(path, false).catch(() => ({dir: undefined, name: ''}))
      if (!parent) return
      this.forget(path)
      const removed = await parent.rmdir(name).then(
        () => true,
        () => false,
      )
      if (!removed) return
    }
  }

  /** The directory holding `path` and its last name; with `create`, missing directories are made (and logged for undo). */
  private async parentOf(path: string, create: boolean): Promise<{dir: DirectoryHandle; name: string}> {
    const dirPath = posix.dirname(path)
    const name = posix.basename(path)
    if (dirPath === '.') return {dir: this.root, name}
    const cached = this.open.get(dirPath)
    if (cached) return {dir: cached, name}
    if (this.open.size >= OPEN_DIRECTORIES) {
      for (const handle of this.open.values()) await handle.close()
      this.open.clear()
    }
    const dir = await openDirectory(this.root, dirPath, create ? {create: 0o755, made: (made) => this.undo.push({kind: 'made-directory', path: made})} : {})
    if (!dir) throw new CleanroomError('workspace_apply_failed', `${visibleName(dirPath)} is not there any more`)
    this.open.set(dirPath, dir)
    return {dir, name}
  }

  /** Drops the cached handles of `path` and below (it is being removed). */
  private forget(path: string): void {
    for (const [cached, handle] of this.open) {
      if (cached === path || cached.startsWith(`${path}/`)) {
        void handle.close()
        this.open.delete(cached)
      }
    }
  }
}

function changedInTransit(path: string): CleanroomError {
  return new CleanroomError('workspace_changed', `${visibleName(path)} changed in the sandbox while it was being applied; nothing was applied`, {
    suggestions: ['Let the sandbox finish writing its files, then apply again'],
  })
}
