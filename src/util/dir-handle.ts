import {constants, type Stats} from 'node:fs'
import {type FileHandle, lstat, mkdir, open, readdir, readlink, rename, rmdir, symlink, unlink} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {visibleName} from './visible.js'

const {O_CREAT, O_DIRECTORY, O_EXCL, O_NOFOLLOW, O_NONBLOCK, O_RDONLY, O_WRONLY} = constants

/**
 * An open directory, and names in it reached through the handle rather than the
 * directory's path: Node has no openat, but on Linux `/proc/self/fd/<fd>/<name>`
 * resolves `name` in the directory the descriptor holds, wherever that directory
 * has been moved and whatever was put at its old path. With O_NOFOLLOW (and
 * mkdir, symlink, rename, unlink, which never follow a last component) nothing
 * done here goes through a symlink: one directory at a time, a tree can be read
 * or written that a hostile party keeps rearranging.
 */
export class DirectoryHandle {
  private constructor(
    private readonly handle: FileHandle,
    /** The directory's path when it was opened, for messages only. */
    readonly path: string,
  ) {}

  /** Opens `path` (resolved once, symlinks in it followed: the caller chose it); with `create`, made first when missing. */
  static async open(path: string, options: {create?: boolean} = {}): Promise<DirectoryHandle> {
    if (options.create) await mkdir(path, {recursive: true})
    return new DirectoryHandle(await open(path, O_RDONLY | O_DIRECTORY), path)
  }

  get fd(): number {
    return this.handle.fd
  }

  /** The path that names `name` in this directory, through the handle. */
  at(name: string): string {
    requireEntryName(name)
    return `/proc/self/fd/${this.handle.fd}/${name}`
  }

  /** The names in this directory, sorted. */
  async list(): Promise<string[]> {
    return (await readdir(`/proc/self/fd/${this.handle.fd}`)).sort()
  }

  /** The entry `name` itself (a symlink is not followed); undefined when there is none. */
  async entry(name: string): Promise<Stats | undefined> {
    return lstat(this.at(name)).catch(absentAsUndefined)
  }

  /** The directory `name`; undefined when nothing is there; `not_a_directory` when a symlink or anything else is. */
  async directory(name: string): Promise<DirectoryHandle | undefined> {
    try {
      return new DirectoryHandle(await open(this.at(name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW), join(this.path, name))
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT') return undefined
      if (code === 'ENOTDIR' || code === 'ELOOP') throw notADirectory(join(this.path, name))
      throw error
    }
  }

  /** The directory `name`, made (with `mode`) when missing; `created` says which. */
  async makeDirectory(name: string, mode: number): Promise<{directory: DirectoryHandle; created: boolean}> {
    let created = true
    await mkdir(this.at(name), {mode}).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'EEXIST') throw error
      created = false
    })
    const directory = await this.directory(name)
    if (!directory) throw new CleanroomError('path_escapes_root', `${visibleName(join(this.path, name))} vanished while it was being written`)
    return {directory, created}
  }

  /**
   * The regular file `name`, open for reading, and its stats; undefined when it is
   * not there or is anything but a regular file (a fifo is never waited on).
   */
  async readFile(name: string): Promise<{file: FileHandle; stats: Stats} | undefined> {
    let file: FileHandle
    try {
      file = await open(this.at(name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK)
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENXIO' || code === 'ENODEV' || code === 'EISDIR') return undefined
      throw error
    }
    const stats = await file.stat()
    if (stats.isFile()) return {file, stats}
    await file.close()
    return undefined
  }

  /** A new file `name` (never an existing one, never through a symlink). */
  createFile(name: string, mode: number): Promise<FileHandle> {
    return open(this.at(name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode)
  }

  readlink(name: string): Promise<string> {
    return readlink(this.at(name))
  }

  symlink(target: string, name: string): Promise<void> {
    return symlink(target, this.at(name))
  }

  unlink(name: string): Promise<void> {
    return unlink(this.at(name))
  }

  rmdir(name: string): Promise<void> {
    return rmdir(this.at(name))
  }

  /** Moves `name` to `toName` in `to` (same filesystem), replacing a file or symlink there without following it. */
  rename(name: string, to: DirectoryHandle, toName: string): Promise<void> {
    return rename(this.at(name), to.at(toName))
  }

  /** This directory's own mode and times, set through the handle. */
  async chmod(mode: number): Promise<void> {
    await this.handle.chmod(mode)
  }

  async utimes(time: Date): Promise<void> {
    await this.handle.utimes(time, time)
  }

  async close(): Promise<void> {
    await this.handle.close()
  }
}

/**
 * Opens the directory at `relative` (`a/b/c`, `/`-separated) under `root` one
 * component at a time without following symlinks; undefined when a component is
 * missing (or, with `create`, makes it with that mode and reports it in `made`).
 * The caller closes the handle; `root` itself is returned for an empty path.
 */
export async function openDirectory(
  root: DirectoryHandle,
  relative: string,
  options: {create?: number; made?: (path: string) => void} = {},
): Promise<DirectoryHandle | undefined> {
  let current = root
  let path = ''
  for (const name of relative.split('/').filter((part) => part !== '')) {
    path = path === '' ? name : `${path}/${name}`
    let next: DirectoryHandle | undefined
    try {
      if (options.create === undefined) {
        next = await current.directory(name)
      } else {
        const made = await current.makeDirectory(name, options.create)
        if (made.created) options.made?.(path)
        next = made.directory
      }
    } finally {
      if (current !== root) await current.close()
    }
    if (!next) return undefined
    current = next
  }
  return current
}

/** A single name in a directory: not empty, `.`, `..`, and no `/` or NUL. */
export function requireEntryName(name: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new CleanroomError('path_escapes_root', `refusing the name ${JSON.stringify(visibleName(name))}: not a single file name`)
  }
}

function notADirectory(path: string): CleanroomError {
  return new CleanroomError('path_escapes_root', `refusing to go through ${visibleName(path)}: it is a symlink or not a directory`)
}

function absentAsUndefined(error: NodeJS.ErrnoException): undefined {
  if (error.code === 'ENOENT' || error.code === 'ENOTDIR') return undefined
  throw error
}
