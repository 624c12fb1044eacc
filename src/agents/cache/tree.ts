import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {chmod, lstat, readdir, readlink} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../errors/index.js'
import {visibleName} from '../../util/visible.js'

/**
 * Makes a fetched tree a cache entry: every file and directory read-only (a file
 * keeps its execute bits), and its name the SHA-256 of what it holds — each path
 * in sorted order with its kind, mode and content (or link target) — so the same
 * release fetched twice is one entry. Only directories, regular files and
 * symlinks can be in it (the tree was unpacked by extractUnder).
 */
export async function sealTree(root: string): Promise<{id: string; bytes: number}> {
  const hash = createHash('sha256')
  let bytes = 0
  const directories: string[] = []

  const walk = async (dir: string, relative: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name)
      const inside = relative === '' ? name : `${relative}/${name}`
      const stats = await lstat(path)
      bytes += stats.blocks * 512
      if (stats.isSymbolicLink()) {
        hash.update(`l ${JSON.stringify(inside)} ${JSON.stringify(await readlink(path))}\n`)
      } else if (stats.isDirectory()) {
        hash.update(`d ${JSON.stringify(inside)}\n`)
        directories.push(path)
        await walk(path, inside)
      } else if (stats.isFile()) {
        const mode = stats.mode & 0o111 ? 0o555 : 0o444
        await chmod(path, mode)
        hash.update(`f ${JSON.stringify(inside)} ${mode.toString(8)} ${await fileHash(path)}\n`)
      } else {
        throw new CleanroomError('agent_install_failed', `the fetched package holds ${visibleName(inside)}, which is neither a file, a directory nor a symlink`)
      }
    }
  }
  await walk(root, '')
  // Deepest first, the root last: a directory made read-only can no longer be walked into for a chmod below it.
  for (const dir of [...directories].reverse()) await chmod(dir, 0o555)
  await chmod(root, 0o555)
  return {id: hash.digest('hex'), bytes}
}

async function fileHash(path: string): Promise<string> {
  const hash = createHash('sha256')
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer)
  return hash.digest('hex')
}

/** Makes an entry writable again so it can be removed (its directories are read-only). */
export async function unsealTree(root: string): Promise<void> {
  const stats = await lstat(root).catch(() => undefined)
  if (!stats?.isDirectory()) return
  await chmod(root, 0o755)
  for (const name of await readdir(root)) {
    const path = join(root, name)
    if ((await lstat(path)).isDirectory()) await unsealTree(path)
  }
}
