import {chmodSync, closeSync, constants, fchmodSync, futimesSync, linkSync, lstatSync, mkdirSync, openSync, readdirSync, readlinkSync, rmSync, type Stats, symlinkSync, unlinkSync, writeSync} from 'node:fs'
import {join, posix} from 'node:path'
import type {Readable} from 'node:stream'
import {extract, type Header} from 'tar-stream'

import {CleanroomError, messageOf} from '../errors/index.js'

const WHITEOUT = '.wh.'
const OPAQUE = '.wh..wh..opq'
const MAX_SYMLINK_HOPS = 40
/** Set-user-id and set-group-id are dropped: sandboxes run with no_new_privs, and a root daemon must not hand out such files. */
const KEPT_MODE_BITS = 0o1777

export interface UnpackStats {
  files: number
  bytes: number
  /** Device nodes and fifos in the layers, not created (a sandbox gets its own minimal /dev). */
  skipped: number
}

/**
 * Applies image layers, in order, to a root filesystem being built in a
 * directory nobody else writes to. Every path an entry names is resolved
 * inside the root: `..` and absolute names are refused, and a symlink met on
 * the way (`bin -> /usr/bin`) is followed as if the root were `/`, so no entry
 * can reach outside it. The entry's own last component is never followed: a
 * file replaces a symlink, it is not written through it. Whiteouts (`.wh.x`)
 * delete what lower layers made; an opaque marker (`.wh..wh..opq`) hides
 * everything lower layers put in its directory. Owners are not applied.
 *
 * File calls are synchronous: an unpack is thousands of small calls, each a
 * round trip through libuv's four-thread pool when asynchronous, queued with
 * zlib's work there; the event loop still turns between entries.
 */
export class RootfsWriter {
  readonly stats: UnpackStats = {files: 0, bytes: 0, skipped: 0}
  /** Directories known to be real directories, not symlinks, so deep trees are not lstat-ed again and again. */
  private readonly knownDirs = new Set<string>()
  /** Directory modes, applied at the end: until then every directory stays writable for us. */
  private readonly dirModes = new Map<string, number>()
  /** Paths the current layer made or went through: an opaque marker keeps these. */
  private layerPaths = new Set<string>()

  constructor(readonly root: string) {}

  async init(): Promise<void> {
    mkdirSync(this.root, {recursive: true, mode: 0o755})
    this.knownDirs.add(this.root)
  }

  /** Unpacks one layer's tar stream (already decompressed). */
  async applyLayer(tar: Readable, layer: string): Promise<void> {
    this.layerPaths = new Set()
    const entries = extract()
    tar.on('error', (error) => entries.destroy(error))
    tar.pipe(entries)
    try {
      for await (const entry of entries) {
        await this.applyEntry(entry.header, entry as unknown as Readable, layer)
        entry.resume()
      }
    } catch (error) {
      tar.destroy()
      if (error instanceof CleanroomError) throw error
      throw new CleanroomError('image_invalid', `layer ${layer} is not a tar cleanroom can unpack: ${messageOf(error)}`, {cause: error})
    }
  }

  /** Gives every directory its mode from the layers, deepest first (a read-only parent would stop the rest). */
  async finish(): Promise<void> {
    const dirs = [...this.dirModes].sort(([a], [b]) => b.split('/').length - a.split('/').length)
    for (const [path, mode] of dirs) {
      if (lstatOrUndefined(path)?.isDirectory()) chmodSync(path, mode)
    }
    chmodSync(this.root, 0o755)
  }

  private async applyEntry(header: Header, body: Readable, layer: string): Promise<void> {
    const parts = entryParts(header.name, layer)
    if (parts.length === 0) return
    const base = parts.at(-1)!
    const parentParts = parts.slice(0, -1)
    if (base === OPAQUE) {
      const dir = this.resolve(parentParts, {create: false, touch: false}, header.name)
      if (dir !== undefined) this.hideLower(dir)
      return
    }
    if (base.startsWith(WHITEOUT)) {
      const victim = base.slice(WHITEOUT.length)
      if (victim === '' || victim === '.' || victim === '..') throw escape(header.name, layer)
      const dir = this.resolve(parentParts, {create: false, touch: false}, header.name)
      if (dir !== undefined) this.remove(join(dir, victim))
      return
    }
    const parent = this.resolve(parentParts, {create: true, touch: true}, header.name)
    const target = join(parent!, base)
    this.layerPaths.add(target)
    const mode = (header.mode ?? 0o644) & KEPT_MODE_BITS
    switch (header.type) {
      case 'directory': {
        const existing = lstatOrUndefined(target)
        if (existing && !existing.isDirectory()) this.remove(target)
        if (!existing?.isDirectory()) mkdirSync(target, {mode: 0o700})
        chmodSync(target, mode | 0o700)
        this.knownDirs.add(target)
        this.dirModes.set(target, mode)
        return
      }
      case 'file':
      case 'contiguous-file':
        this.remove(target)
        await this.writeFile(target, body, mode, header.mtime)
        return
      case 'symlink':
        if ((header.linkname ?? '').includes('\0')) throw escape(header.name, layer)
        this.remove(target)
        symlinkSync(header.linkname ?? '', target)
        return
      case 'link': {
        const linkParts = entryParts(header.linkname ?? '', layer)
        if (linkParts.length === 0) throw escape(header.linkname ?? '', layer)
        const sourceDir = this.resolve(linkParts.slice(0, -1), {create: false, touch: false}, header.linkname ?? '')
        const source = sourceDir === undefined ? undefined : join(sourceDir, linkParts.at(-1)!)
        const stats = source === undefined ? undefined : lstatOrUndefined(source)
        if (!source || !stats || stats.isDirectory()) {
          throw new CleanroomError('image_invalid', `layer ${layer}: hard link ${header.name} points at ${header.linkname}, which is not a file of the image`)
        }
        if (source === target) return
        this.remove(target)
        linkSync(source, target)
        return
      }
      default:
        // Devices, fifos and anything unknown: not created.
        this.stats.skipped++
    }
  }

  private async writeFile(target: string, body: Readable, mode: number, mtime: Date | undefined): Promise<void> {
    const fd = openSync(target, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600)
    try {
      for await (const chunk of body) {
        const buffer = chunk as Buffer
        for (let offset = 0; offset < buffer.length; ) offset += writeSync(fd, buffer, offset)
        this.stats.bytes += buffer.length
      }
      fchmodSync(fd, mode)
      if (mtime) futimesSync(fd, mtime, mtime)
    } finally {
      closeSync(fd)
    }
    this.stats.files++
  }

  /**
   * The directory `parts` name, resolved inside the root: `..` stops at the
   * root, a symlink's target is read as if the root were `/`. With `create`,
   * missing directories are made; `touch` marks every directory passed as
   * belonging to this layer. Undefined when something is missing and not created.
   */
  private resolve(parts: readonly string[], options: {create: boolean; touch: boolean}, name: string): string | undefined {
    const pending = [...parts]
    const current: string[] = []
    let hops = 0
    while (pending.length > 0) {
      const part = pending.shift()!
      if (part === '' || part === '.') continue
      if (part === '..') {
        current.pop()
        continue
      }
      const candidate = join(this.root, ...current, part)
      if (!this.knownDirs.has(candidate)) {
        const stats = lstatOrUndefined(candidate)
        if (stats === undefined) {
          if (!options.create) return undefined
          mkdirSync(candidate, {mode: 0o755})
        } else if (stats.isSymbolicLink()) {
          if (++hops > MAX_SYMLINK_HOPS) throw new CleanroomError('image_invalid', `${name}: too many levels of symbolic links`)
          const target = readlinkSync(candidate)
          if (target.startsWith('/')) current.length = 0
          pending.unshift(...target.split('/'))
          continue
        } else if (!stats.isDirectory()) {
          if (!options.create) return undefined
          throw new CleanroomError('image_invalid', `${name}: ${posix.join(...current, part)} is not a directory in the image`)
        }
        this.knownDirs.add(candidate)
      }
      current.push(part)
      if (options.touch) this.layerPaths.add(candidate)
    }
    return join(this.root, ...current)
  }

  /** Deletes everything under `dir` that lower layers made (this layer's own entries stay). */
  private hideLower(dir: string): void {
    for (const child of readdirSync(dir)) {
      const path = join(dir, child)
      if (!this.layerPaths.has(path)) this.remove(path)
      else if (lstatSync(path).isDirectory()) this.hideLower(path)
    }
  }

  /** Removes whatever is at `path` (not following it), forgetting any directory known under it. */
  private remove(path: string): void {
    const stats = lstatOrUndefined(path)
    if (stats === undefined) return
    if (stats.isDirectory()) {
      const under = (other: string) => other === path || other.startsWith(`${path}/`)
      for (const known of this.knownDirs) if (under(known)) this.knownDirs.delete(known)
      for (const dir of this.dirModes.keys()) if (under(dir)) this.dirModes.delete(dir)
      rmSync(path, {recursive: true, force: true})
    } else {
      unlinkSync(path)
    }
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  return lstatSync(path, {throwIfNoEntry: false})
}

/** The components of an entry name, or path_escapes_root for absolute names and `..` that leaves the root. */
function entryParts(name: string, layer: string): string[] {
  if (name.includes('\0') || name.startsWith('/')) throw escape(name, layer)
  const normalized = posix.normalize(name)
  if (normalized === '..' || normalized.startsWith('../')) throw escape(name, layer)
  return normalized.split('/').filter((part) => part !== '' && part !== '.')
}

function escape(name: string, layer: string): CleanroomError {
  return new CleanroomError('path_escapes_root', `layer ${layer}: entry ${JSON.stringify(name)} would leave the image's root filesystem; the image was refused`, {
    suggestions: ['Do not use this image: its layers were built to write outside the root filesystem'],
  })
}
