import {lstat, readdir} from 'node:fs/promises'
import {join} from 'node:path'

/** Directories read at once: wide trees (npm's cache) must not take a file descriptor per directory. */
const PARALLEL = 16

/**
 * The bytes `path` takes on disk, as `du` counts them (allocated blocks), without
 * following a symlink and counting a hard-linked file once. What cannot be read
 * (a directory of mode 000) counts as empty; a path that does not exist is 0.
 */
export async function diskUsage(path: string): Promise<number> {
  const seen = new Set<string>()
  let bytes = 0
  const pending = [path]
  while (pending.length > 0) {
    const batch = pending.splice(0, PARALLEL)
    await Promise.all(
      batch.map(async (entry) => {
        const stats = await lstat(entry).catch(() => undefined)
        if (!stats) return
        const id = `${stats.dev}:${stats.ino}`
        if (seen.has(id)) return
        seen.add(id)
        bytes += stats.blocks * 512
        if (!stats.isDirectory()) return
        const names = await readdir(entry).catch(() => [])
        for (const name of names) pending.push(join(entry, name))
      }),
    )
  }
  return bytes
}
