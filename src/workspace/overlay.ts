import {spawn} from 'node:child_process'
import type {Stats} from 'node:fs'
import {extract} from 'tar-stream'

import {CleanroomError} from '../errors/index.js'
import {type DirectoryHandle, openDirectory} from '../util/dir-handle.js'
import {visibleName} from '../util/visible.js'
import {changedWhileRead} from './entry.js'

/** What changed in an overlay's upper layer: the paths whose content may differ from the lower one. */
export interface OverlayScan {
  /**
   * Every file or symlink path the sandbox wrote, replaced or deleted (of either
   * layer), with when it did (ms): the birth time of its upper entry, or of the
   * whiteout, opaque directory or file that hides the lower one.
   */
  touched: Map<string, number>
  /** Entries the sandbox changed under a `.git` directory: counted, never brought back. */
  gitChanges: number
}

export interface OverlayLayers {
  upper: DirectoryHandle
  lower: DirectoryHandle
  /** Paths hidden from the sandbox at create (what git ignores): neither side is looked at. */
  hidden: readonly string[]
  /** Files the backend put in the upper layer at create, untouched since (the redacted .git/config): not changes. */
  provided?: readonly string[]
  /** When the sandbox was created (ms): the change time of an upper entry whose birth time the filesystem does not keep. */
  createdAt: number
}

/** Directories checked for the opaque mark per tar run (each is one open descriptor passed to it). */
const OPAQUE_BATCH = 64

/**
 * Walks the upper layer of an overlay beside the lower one, through directory
 * handles (a workload that swaps a directory for a symlink while this runs only
 * makes it see fewer entries, never another directory's): whiteouts (0/0
 * character devices), opaque directories, and files or directories put where
 * the lower had the other kind delete what the lower has there. Reads metadata only.
 */
export async function scanOverlay(layers: OverlayLayers): Promise<OverlayScan> {
  const scan: OverlayScan = {touched: new Map(), gitChanges: 0}
  const hidden = layers.hidden.map((path) => path.replace(/\/+$/, '')).filter((path) => path !== '')
  const isHidden = (path: string) => hidden.some((h) => path === h || path.startsWith(`${h}/`))
  const provided = new Set(layers.provided ?? [])
  const changedAt = (stats: Stats) => (stats.birthtimeMs > 0 ? stats.birthtimeMs : layers.createdAt)
  /** Directories in both layers: the lower's entries show through unless the upper one is opaque. */
  const merged = new Map<string, {names: Set<string>; at: number}>()

  /** Every file and symlink of the lower at and below `path` is replaced or deleted as of `at`. */
  const hideLower = async (dir: DirectoryHandle, name: string, path: string, stats: Stats, at: number): Promise<void> => {
    if (isHidden(path) || isGitName(name)) return
    requireText(path)
    if (stats.isDirectory()) {
      const sub = await dir.directory(name)
      if (!sub) return
      try {
        for (const child of await sub.list()) {
          const childStats = await sub.entry(child)
          if (childStats) await hideLower(sub, child, `${path}/${child}`, childStats, at)
        }
      } finally {
        await sub.close()
      }
      return
    }
    // Only what git can carry: a fifo or a device is neither diffed nor applied.
    if (stats.isFile() || stats.isSymbolicLink()) scan.touched.set(path, at)
  }

  const walk = async (upper: DirectoryHandle, lower: DirectoryHandle | undefined, dir: string): Promise<void> => {
    for (const name of await upper.list()) {
      const path = dir === '' ? name : `${dir}/${name}`
      if (isHidden(path)) continue
      const stats = await upper.entry(name)
      if (!stats) continue
      if (isGitName(name)) {
        scan.gitChanges += await countEntries(upper, name, stats, path, provided)
        continue
      }
      requireText(path)
      const lowerStats = lower ? await lower.entry(name) : undefined
      const at = changedAt(stats)
      if (stats.isCharacterDevice() && stats.rdev === 0) {
        if (lowerStats) await hideLower(lower!, name, path, lowerStats, at)
      } else if (stats.isDirectory()) {
        if (lowerStats?.isDirectory()) merged.set(path, {names: new Set(), at})
        else if (lowerStats) await hideLower(lower!, name, path, lowerStats, at)
        // Swapped for something else since it was listed: the workload is rearranging its files right now.
        const upperSub = await upper.directory(name).catch(() => {
          throw changedWhileRead(path)
        })
        const lowerSub = lowerStats?.isDirectory() ? await lower!.directory(name).catch(() => undefined) : undefined
        try {
          if (upperSub) {
            const entry = merged.get(path)
            if (entry) for (const child of await upperSub.list()) entry.names.add(child)
            await walk(upperSub, lowerSub, path)
          }
        } finally {
          await upperSub?.close()
          await lowerSub?.close()
        }
      } else if (stats.isFile() || stats.isSymbolicLink()) {
        if (lowerStats) await hideLower(lower!, name, path, lowerStats, at)
        scan.touched.set(path, at)
      }
    }
  }

  await walk(layers.upper, layers.lower, '')
  for (const dir of await opaqueDirectories(layers.upper, [...merged.keys()])) {
    const {names, at} = merged.get(dir)!
    const lower = await openDirectory(layers.lower, dir).catch(() => undefined)
    if (!lower) continue
    try {
      for (const name of await lower.list()) {
        if (names.has(name)) continue
        const stats = await lower.entry(name)
        if (stats) await hideLower(lower, name, `${dir}/${name}`, stats, at)
      }
    } finally {
      if (lower !== layers.lower) await lower.close()
    }
  }
  return scan
}

/** `.git` in any case: a case-insensitive filesystem treats `.GIT` as git's own directory too. */
export function isGitName(name: string): boolean {
  return name.toLowerCase() === '.git'
}

/** A name that is not UTF-8 cannot be named in a patch or the API. */
function requireText(path: string): void {
  if (path.includes('\uFFFD')) {
    throw new CleanroomError('workspace_unsupported_entry', `${visibleName(path)}: a file name that is not UTF-8 text cannot be brought back`, {
      suggestions: ['Rename or remove that file in the sandbox'],
    })
  }
}

/** Entries at `path` (`name` in `dir`), files the backend provided and the sandbox left alone not counted. */
async function countEntries(dir: DirectoryHandle, name: string, stats: Stats, path: string, provided: ReadonlySet<string>): Promise<number> {
  if (!stats.isDirectory()) return provided.has(path) ? 0 : 1
  const sub = await dir.directory(name).catch(() => undefined)
  if (!sub) return 0
  let count = 0
  try {
    for (const child of await sub.list()) {
      const childStats = await sub.entry(child)
      if (childStats) count += await countEntries(sub, child, childStats, `${path}/${child}`, provided)
    }
  } finally {
    await sub.close()
  }
  return count
}

/**
 * Which of `dirs` (relative to the upper layer) carry the overlay's opaque mark
 * (`trusted.overlay.opaque`, or `user.overlay.opaque` in a user namespace).
 * Node cannot read extended attributes, GNU tar can, and its pax headers carry
 * them: each directory is opened here without following symlinks and handed to
 * tar as a descriptor, which it reads as `/proc/self/fd/N/.`.
 */
export async function opaqueDirectories(upper: DirectoryHandle, dirs: string[]): Promise<string[]> {
  const opaque: string[] = []
  for (let start = 0; start < dirs.length; start += OPAQUE_BATCH) {
    const batch = dirs.slice(start, start + OPAQUE_BATCH)
    const handles: DirectoryHandle[] = []
    try {
      for (const dir of batch) {
        const handle = await openDirectory(upper, dir).catch(() => undefined)
        if (handle) handles.push(handle)
        else handles.push(upper)
      }
      const marked = await opaqueByDescriptor(handles.map((handle) => handle.fd))
      batch.forEach((dir, index) => {
        if (handles[index] !== upper && marked.has(index)) opaque.push(dir)
      })
    } finally {
      for (const handle of handles) if (handle !== upper) await handle.close()
    }
  }
  return opaque
}

/** The indexes of `fds` whose directory has the opaque mark. */
async function opaqueByDescriptor(fds: number[]): Promise<Set<number>> {
  const marked = new Set<number>()
  const parser = extract()
  parser.on('entry', (header, stream, next) => {
    const pax = (header.pax ?? {}) as Record<string, string>
    const fd = /^proc\/self\/fd\/(\d+)\//.exec(header.name)
    if (fd && (pax['SCHILY.xattr.trusted.overlay.opaque'] === 'y' || pax['SCHILY.xattr.user.overlay.opaque'] === 'y')) marked.add(Number(fd[1]) - 3)
    stream.on('end', next)
    stream.resume()
  })
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('finish', resolve)
    parser.on('error', reject)
  })
  const tar = spawn(
    'tar',
    ['-c', '-f', '-', '--xattrs', '--xattrs-include=trusted.overlay.opaque', '--xattrs-include=user.overlay.opaque', '--no-recursion', '--null', '-T', '-'],
    {stdio: ['pipe', 'pipe', 'ignore', ...fds]},
  )
  tar.stdin!.on('error', () => undefined)
  tar.stdout!.pipe(parser)
  tar.stdin!.end(fds.map((_fd, index) => `/proc/self/fd/${index + 3}/.\0`).join(''))
  const exited = new Promise<void>((resolve, reject) => {
    tar.on('error', reject)
    tar.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar could not read the upper layer's directories (exit ${code})`))))
  })
  await Promise.all([exited, parsed])
  return marked
}
