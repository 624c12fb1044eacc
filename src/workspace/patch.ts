export type ChangeKind = 'added' | 'modified' | 'deleted' | 'mode'

/** One path of a git-style patch and what the patch does to it. */
export interface PatchedPath {
  path: string
  change: ChangeKind
}

/**
 * `git diff --no-index --no-prefix a b` names a new file `b/x b/x` and a deleted
 * one `a/x a/x`; git apply wants `a/x b/x` like any other diff.
 */
export function normalizeHeaders(patch: string): string {
  return patch.replace(/^diff --git (.*)$/gm, (line, rest: string) => {
    const side = headerPath(rest)
    if (side === undefined) return line
    return side.quoted ? `diff --git "a/${side.rel}" "b/${side.rel}"` : `diff --git a/${side.rel} b/${side.rel}`
  })
}

/** The paths a patch touches, in its order; a type change (two blocks for one path) is one `modified`. */
export function patchedPaths(patch: string): PatchedPath[] {
  const found = new Map<string, ChangeKind>()
  for (const block of patch.split(/^(?=diff --git )/m)) {
    const header = /^diff --git (.*)$/m.exec(block)
    const side = header ? headerPath(header[1]!) : undefined
    if (!side) continue
    const path = side.quoted ? unquoteGitPath(side.rel) : side.rel
    const lines = block.split('\n')
    let change: ChangeKind = 'modified'
    if (lines.some((line) => line.startsWith('new file mode '))) change = 'added'
    else if (lines.some((line) => line.startsWith('deleted file mode '))) change = 'deleted'
    else if (lines.some((line) => line.startsWith('old mode ')) && !lines.some((line) => line.startsWith('index '))) change = 'mode'
    found.set(path, found.has(path) ? 'modified' : change)
  }
  return [...found].map(([path, change]) => ({path, change}))
}

/** `X X` where both halves are one path with a one-letter side prefix: the relative path, still quoted if git quoted it. */
function headerPath(rest: string): {rel: string; quoted: boolean} | undefined {
  const half = (rest.length - 1) / 2
  if (!Number.isInteger(half) || rest[half] !== ' ') return undefined
  const left = rest.slice(0, half)
  const right = rest.slice(half + 1)
  const quoted = left.startsWith('"') && left.endsWith('"')
  const inner = quoted ? left.slice(1, -1) : left
  const innerRight = quoted ? right.slice(1, -1) : right
  if (!/^[ab]\//.test(inner) || inner.slice(2) !== innerRight.slice(2)) return undefined
  return {rel: inner.slice(2), quoted}
}

const ESCAPES: Record<string, number> = {a: 7, b: 8, t: 9, n: 10, v: 11, f: 12, r: 13, '"': 34, '\\': 92}

/** Undoes git's C-style quoting of a path (`\303\251` → `é`). */
export function unquoteGitPath(quoted: string): string {
  const bytes: number[] = []
  for (let i = 0; i < quoted.length; i++) {
    const char = quoted[i]!
    if (char !== '\\') {
      bytes.push(...Buffer.from(char, 'utf8'))
      continue
    }
    const next = quoted[i + 1] ?? ''
    if (/[0-7]/.test(next)) {
      bytes.push(Number.parseInt(quoted.slice(i + 1, i + 4), 8))
      i += 3
    } else {
      bytes.push(ESCAPES[next] ?? next.charCodeAt(0))
      i += 1
    }
  }
  return Buffer.from(bytes).toString('utf8')
}
