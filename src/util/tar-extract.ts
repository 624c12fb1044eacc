import {randomBytes} from 'node:crypto'
import {posix, resolve} from 'node:path'
import type {Readable} from 'node:stream'
import {extract} from 'tar-stream'

import {CleanroomError} from '../errors/index.js'
import {DirectoryHandle, openDirectory} from './dir-handle.js'
import {leadsOutside, type TreeEntry} from './link-target.js'
import {visibleName} from './visible.js'

/** A directory is made with this mode (less the umask) and gets its archived mode once its contents are in. */
const NEW_DIRECTORY_MODE = 0o755
/** Handles kept open while unpacking, at most: a deep or wide tree must not run out of descriptors. */
const OPEN_DIRECTORIES = 64

/**
 * Unpacks an untrusted tar (it comes out of a sandbox) into `root`, renaming its
 * top entry `from` to `to`. `root` is resolved once, up front; below it nothing
 * is written through a symlink, whether the archive made it or it was there
 * before: every directory is opened without following one, and a file or link
 * replaces whatever file or symlink had its name instead of writing through it.
 * Names with `..` or absolute names are refused; set-id bits are dropped; links,
 * devices and fifos are not created, and a symlink only when, followed through
 * the tree as it ends up, it stays inside the copy.
 */
export async function extractUnder(root: string, archive: Readable, rename: {from: string; to: string}): Promise<number> {
  const tree = new CopyTree(await DirectoryHandle.open(resolve(root), {create: true}))
  let written = 0
  const unpack = extract()
  archive.on('error', (error: Error) => unpack.destroy(error))
  archive.pipe(unpack as unknown as NodeJS.WritableStream)
  try {
    for await (const entry of unpack) {
      const {header} = entry
      const name = renameTop(safeName(header.name), rename)
      if (header.type === 'file' || header.type === 'contiguous-file') {
        await tree.writeFile(name, entry as AsyncIterable<Buffer>, fileMode(header.mode ?? 0o644), header.mtime)
        written++
        continue
      }
      if (header.type === 'directory') await tree.directory(name, directoryMode(header.mode ?? 0o755), header.mtime)
      else if (header.type === 'symlink') tree.pendingLinks.set(name, header.linkname ?? '')
      // Hard links, devices and fifos are not created.
      entry.resume()
    }
    await tree.finish(rename.to)
  } catch (error) {
    archive.destroy()
    throw error
  } finally {
    await tree.close()
  }
  return written
}

/** A file's mode as written on the host: permissions only, never setuid, setgid or sticky. */
export function fileMode(mode: number): number {
  return mode & 0o777
}

/** A directory's mode as written on the host: permissions and the sticky bit, never setuid or setgid. */
export function directoryMode(mode: number): number {
  return mode & 0o1777
}

/** The destination being written, by paths relative to its root directory. */
class CopyTree {
  readonly pendingLinks = new Map<string, string>()
  private readonly directoryTimes = new Map<string, {mode: number; mtime?: Date}>()
  private readonly open = new Map<string, DirectoryHandle>()

  constructor(private readonly root: DirectoryHandle) {}

  async writeFile(path: string, content: AsyncIterable<Buffer>, mode: number, mtime: Date | undefined): Promise<void> {
    const {dir, name} = await this.parentOf(path)
    const temp = temporaryName()
    const file = await dir.createFile(temp, 0o600)
    try {
      for await (const chunk of content) await file.write(chunk)
      await file.chmod(mode)
      if (mtime) await file.utimes(mtime, mtime)
    } catch (error) {
      await file.close()
      await dir.unlink(temp).catch(() => undefined)
      throw error
    }
    await file.close()
    await this.replace(dir, temp, name, path)
  }

  async directory(path: string, mode: number, mtime: Date | undefined): Promise<void> {
    await this.handle(path)
    this.directoryTimes.set(path, {mode, mtime})
  }

  /** Creates the symlinks that stay inside the copy (refusing the first that does not), then sets directory modes, deepest first. */
  async finish(top: string): Promise<void> {
    for (const [path, target] of this.pendingLinks) {
      const inside = path === top ? [] : path.slice(top.length + 1).split('/')
      if (await leadsOutside(inside, target, (parts) => this.lookup([top, ...parts].join('/')))) {
        throw new CleanroomError('path_escapes_root', `refusing symlink ${visibleName(path)} -> ${visibleName(target)}: followed, it leads outside the copy`, {
          suggestions: ['Copy the file or directory it points to instead'],
        })
      }
    }
    for (const [path, target] of this.pendingLinks) {
      const {dir, name} = await this.parentOf(path)
      const temp = temporaryName()
      await dir.symlink(target, temp)
      await this.replace(dir, temp, name, path)
    }
    const deepestFirst = [...this.directoryTimes].sort(([a], [b]) => b.split('/').length - a.split('/').length)
    for (const [path, {mode, mtime}] of deepestFirst) {
      const dir = await this.handle(path)
      await dir.chmod(mode)
      if (mtime) await dir.utimes(mtime)
    }
  }

  async close(): Promise<void> {
    for (const handle of this.open.values()) await handle.close()
    this.open.clear()
    await this.root.close()
  }

  /** What the finished tree will have at `path`: a symlink still to be made counts as made. */
  private async lookup(path: string): Promise<TreeEntry> {
    const link = this.pendingLinks.get(path)
    if (link !== undefined) return {symlink: link}
    const parent = await openDirectory(this.root, posix.dirname(path)).catch(() => undefined)
    if (!parent) return undefined
    try {
      const stats = await parent.entry(posix.basename(path))
      if (!stats) return undefined
      if (stats.isSymbolicLink()) return {symlink: await parent.readlink(posix.basename(path))}
      return stats.isDirectory() ? 'directory' : 'other'
    } finally {
      if (parent !== this.root) await parent.close()
    }
  }

  /** Moves the finished `temp` over `name`: a file or symlink there is replaced, never followed; a directory there is an error. */
  private async replace(dir: DirectoryHandle, temp: string, name: string, path: string): Promise<void> {
    try {
      await dir.rename(temp, dir, name)
    } catch (error) {
      await dir.unlink(temp).catch(() => undefined)
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'EISDIR' || code === 'ENOTEMPTY' || code === 'EEXIST') {
        throw new CleanroomError('bad_request', `cannot write ${visibleName(path)}: a directory is in the way at the destination`)
      }
      throw error
    }
  }

  private async parentOf(path: string): Promise<{dir: DirectoryHandle; name: string}> {
    return {dir: await this.handle(posix.dirname(path)), name: posix.basename(path)}
  }

  /** The directory at `path` (relative to the root; `.` is the root), made when missing, never through a symlink. */
  private async handle(path: string): Promise<DirectoryHandle> {
    if (path === '.' || path === '') return this.root
    const cached = this.open.get(path)
    if (cached) return cached
    if (this.pendingLinks.has(path)) throw new CleanroomError('path_escapes_root', `refusing to write through the symlink ${visibleName(path)}`)
    if (this.open.size >= OPEN_DIRECTORIES) {
      for (const handle of this.open.values()) await handle.close()
      this.open.clear()
    }
    const parent = await this.handle(posix.dirname(path))
    const {directory} = await parent.makeDirectory(posix.basename(path), NEW_DIRECTORY_MODE)
    this.open.set(path, directory)
    return directory
  }
}

function temporaryName(): string {
  return `.cleanroom-${randomBytes(6).toString('hex')}`
}

function safeName(name: string): string {
  const normalized = posix.normalize(name).replace(/\/+$/, '')
  if (name.includes('\0') || posix.isAbsolute(name) || normalized === '..' || normalized.startsWith('../')) {
    throw new CleanroomError('path_escapes_root', `refusing archive entry ${visibleName(name)}: it leaves the destination`)
  }
  return normalized
}

function renameTop(name: string, {from, to}: {from: string; to: string}): string {
  if (name === from) return to
  if (name.startsWith(`${from}/`)) return `${to}${name.slice(from.length)}`
  throw new CleanroomError('path_escapes_root', `refusing archive entry ${visibleName(name)}: not under ${visibleName(from)}`)
}
