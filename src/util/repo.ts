import {stat} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'

/** The nearest directory at or above `dir` holding a `.git` entry (a repository's root), if any. */
export async function findGitRoot(dir: string): Promise<string | undefined> {
  for (let current = resolve(dir); ; current = dirname(current)) {
    if (await exists(join(current, '.git'))) return current
    if (dirname(current) === current) return undefined
  }
}

/** The directories from `dir` up to its git root, nearest first; just `dir` outside a repository. */
export async function dirsUpToGitRoot(dir: string): Promise<string[]> {
  const start = resolve(dir)
  const root = await findGitRoot(start)
  if (root === undefined) return [start]
  const dirs: string[] = []
  for (let current = start; ; current = dirname(current)) {
    dirs.push(current)
    if (current === root) return dirs
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}
