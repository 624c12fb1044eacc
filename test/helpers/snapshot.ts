import {createHash} from 'node:crypto'
import {lstat, readdir, readFile, readlink} from 'node:fs/promises'
import {join} from 'node:path'

/**
 * Every entry under `root` (symlinks not followed) as `path → kind, mode, digest`:
 * two snapshots are equal exactly when nothing was added, removed, rewritten,
 * re-linked or chmod-ed. `skip` leaves out names (e.g. `.git`).
 */
export async function snapshotTree(root: string, skip: readonly string[] = []): Promise<Record<string, string>> {
  const snapshot: Record<string, string> = {}
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      if (skip.includes(name)) continue
      const path = join(dir, name)
      const rel = prefix === '' ? name : `${prefix}/${name}`
      const stats = await lstat(path)
      const mode = (stats.mode & 0o7777).toString(8)
      if (stats.isSymbolicLink()) {
        snapshot[rel] = `link ${await readlink(path)}`
      } else if (stats.isDirectory()) {
        snapshot[rel] = `dir ${mode}`
        await walk(path, rel)
      } else if (stats.isFile()) {
        snapshot[rel] = `file ${mode} ${createHash('sha256').update(await readFile(path)).digest('hex')}`
      } else {
        snapshot[rel] = `other ${mode}`
      }
    }
  }
  await walk(root, '')
  return snapshot
}
