import {spawn} from 'node:child_process'
import {lstat, readdir} from 'node:fs/promises'
import type {Stats} from 'node:fs'
import {join} from 'node:path'
import {extract} from 'tar-stream'

/** What changed in an overlay's upper layer, as the files to compare on each side. */
export interface OverlayScan {
  /** Non-directory paths of the lower layer the sandbox replaced or deleted (the "before" side). */
  lowerPaths: string[]
  /** Non-directory paths of the upper layer (the "after" side). */
  upperPaths: string[]
  /** For each path: when the sandbox changed it (ms), to tell whether the host changed it since. */
  changedAt: Map<string, number>
  /** For each lower path: its ctime (ms) now. */
  lowerCtime: Map<string, number>
  /** Entries the sandbox changed under a `.git` directory: counted, never diffed. */
  gitChanges: number
}

export interface OverlayLayers {
  upper: string
  lower: string
  /** Paths hidden from the sandbox at create (what git ignores): neither side is looked at. */
  hidden: readonly string[]
  /** Files the backend put in the upper layer at create, untouched since (the redacted .git/config): not changes. */
  provided?: readonly string[]
  /** When the sandbox was created (ms): the change time of an upper entry whose birth time the filesystem does not keep. */
  createdAt: number
}

/**
 * Walks the upper layer of an overlay and lists what the sandbox added, replaced
 * and deleted relative to the lower one: whiteouts (0/0 character devices) and
 * opaque directories delete what the lower has there. Reads metadata only.
 */
export async function scanOverlay(layers: OverlayLayers): Promise<OverlayScan> {
  const scan: OverlayScan = {lowerPaths: [], upperPaths: [], changedAt: new Map(), lowerCtime: new Map(), gitChanges: 0}
  const hidden = layers.hidden.map((path) => path.replace(/\/+$/, '')).filter((path) => path !== '')
  const isHidden = (path: string) => hidden.some((h) => path === h || path.startsWith(`${h}/`))
  const provided = new Set(layers.provided ?? [])
  const changedAt = (stats: Stats) => (stats.birthtimeMs > 0 ? stats.birthtimeMs : layers.createdAt)
  /** Directories in both layers: the lower's entries show through unless the upper one is opaque. */
  const merged = new Map<string, {names: Set<string>; at: number}>()

  const lowerStat = (path: string) => lstat(join(layers.lower, path)).catch(() => undefined)

  const addLower = async (path: string, stats: Stats, at: number): Promise<void> => {
    if (isHidden(path) || isGitPath(path)) return
    if (stats.isDirectory()) {
      for (const name of await readdir(join(layers.lower, path)).catch(() => [])) {
        const child = `${path}/${name}`
        const childStats = await lowerStat(child)
        if (childStats) await addLower(child, childStats, at)
      }
      return
    }
    // Only what git can carry: a fifo or a device is neither diffed nor applied.
    if (!stats.isFile() && !stats.isSymbolicLink()) return
    scan.lowerPaths.push(path)
    scan.changedAt.set(path, at)
    scan.lowerCtime.set(path, stats.ctimeMs)
  }

  const walk = async (dir: string): Promise<void> => {
    const names = await readdir(join(layers.upper, dir))
    for (const name of names) {
      const path = dir === '' ? name : `${dir}/${name}`
      if (isHidden(path)) continue
      const stats = await lstat(join(layers.upper, path))
      if (isGitPath(path)) {
        scan.gitChanges += await countEntries(layers.upper, path, stats, provided)
        continue
      }
      const lower = await lowerStat(path)
      const at = changedAt(stats)
      if (stats.isCharacterDevice() && stats.rdev === 0) {
        if (lower) await addLower(path, lower, at)
      } else if (stats.isDirectory()) {
        if (lower?.isDirectory()) merged.set(path, {names: new Set(await readdir(join(layers.upper, path))), at})
        else if (lower) await addLower(path, lower, at)
        await walk(path)
      } else if (stats.isFile() || stats.isSymbolicLink()) {
        if (lower) await addLower(path, lower, at)
        scan.upperPaths.push(path)
        scan.changedAt.set(path, at)
      }
    }
  }

  await walk('')
  for (const dir of await opaqueDirectories(layers.upper, [...merged.keys()])) {
    const {names, at} = merged.get(dir)!
    for (const name of await readdir(join(layers.lower, dir)).catch(() => [])) {
      if (names.has(name)) continue
      const stats = await lowerStat(`${dir}/${name}`)
      if (stats) await addLower(`${dir}/${name}`, stats, at)
    }
  }
  scan.lowerPaths.sort()
  scan.upperPaths.sort()
  return scan
}

function isGitPath(path: string): boolean {
  return path.split('/').includes('.git')
}

async function countEntries(root: string, path: string, stats: Stats, skip: ReadonlySet<string>): Promise<number> {
  if (!stats.isDirectory()) return skip.has(path) ? 0 : 1
  let count = 0
  for (const name of await readdir(join(root, path)).catch(() => [])) {
    const child = `${path}/${name}`
    count += await countEntries(root, child, await lstat(join(root, child)), skip)
  }
  return count
}

/**
 * Which of `dirs` (relative to `upper`) carry the overlay's opaque mark
 * (`trusted.overlay.opaque`, or `user.overlay.opaque` in a user namespace).
 * Node cannot read extended attributes, GNU tar can: its pax headers carry them.
 */
export async function opaqueDirectories(upper: string, dirs: string[]): Promise<string[]> {
  if (dirs.length === 0) return []
  const opaque: string[] = []
  const parser = extract()
  parser.on('entry', (header, stream, next) => {
    const pax = (header.pax ?? {}) as Record<string, string>
    if (pax['SCHILY.xattr.trusted.overlay.opaque'] === 'y' || pax['SCHILY.xattr.user.overlay.opaque'] === 'y') opaque.push(header.name.replace(/\/$/, ''))
    stream.on('end', next)
    stream.resume()
  })
  const parsed = new Promise<void>((resolve, reject) => {
    parser.on('finish', resolve)
    parser.on('error', reject)
  })
  const tar = spawn(
    'tar',
    ['-c', '-f', '-', '--xattrs', '--xattrs-include=trusted.overlay.opaque', '--xattrs-include=user.overlay.opaque', '--no-recursion', '--null', '-C', upper, '-T', '-'],
    {stdio: ['pipe', 'pipe', 'ignore']},
  )
  tar.stdin.on('error', () => undefined)
  tar.stdout.pipe(parser)
  tar.stdin.end(dirs.map((dir) => `${dir}\0`).join(''))
  const exited = new Promise<void>((resolve, reject) => {
    tar.on('error', reject)
    tar.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar could not read the upper layer's directories (exit ${code})`))))
  })
  await Promise.all([exited, parsed])
  return opaque
}
