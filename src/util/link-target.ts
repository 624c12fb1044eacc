/** What is at a path of a tree, for following a symlink through it: a symlink's target, or another kind of entry, or nothing. */
export type TreeEntry = {symlink: string} | 'directory' | 'other' | undefined

/** Looks up a path of the tree (its parts from the tree's root); never called with an empty list. */
export type TreeLookup = (parts: readonly string[]) => Promise<TreeEntry>

/** Symlinks followed at most (Linux's own limit). */
const MAX_LINKS = 40

/**
 * Whether a symlink at `linkParts` (from the tree's root) with `target` leads out
 * of the tree when followed: the resolved target decides, not its spelling, so
 * `s -> .` then `s/s/s/../../../../etc` is out. Every symlink met on the way is
 * followed through `lookup` (the tree as it will be once written); leaving the
 * root at any step, an absolute target, or a loop counts as out. A link at the
 * root itself (empty `linkParts`) has nowhere inside to point.
 */
export async function leadsOutside(linkParts: readonly string[], target: string, lookup: TreeLookup): Promise<boolean> {
  if (linkParts.length === 0 || target.startsWith('/')) return true
  const position = linkParts.slice(0, -1)
  const pending = target.split('/')
  let followed = 0
  while (pending.length > 0) {
    const part = pending.shift()!
    if (part === '' || part === '.') continue
    if (part === '..') {
      if (position.length === 0) return true
      position.pop()
      continue
    }
    position.push(part)
    const found = await lookup(position)
    if (found === undefined || typeof found === 'string') continue
    if (++followed > MAX_LINKS || found.symlink.startsWith('/')) return true
    position.pop()
    pending.unshift(...found.symlink.split('/'))
  }
  return false
}
