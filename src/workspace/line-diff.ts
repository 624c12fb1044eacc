/** A run of lines that differ: `a[aStart, aEnd)` is replaced by `b[bStart, bEnd)`. */
export interface LineEdit {
  aStart: number
  aEnd: number
  bStart: number
  bEnd: number
}

/** Edits searched at most before the differing middle is shown as one replacement (bounds time and memory). */
const MAX_EDITS = 1000

/**
 * The edits that turn `a` into `b` (lines as numbers: equal lines, equal numbers),
 * by Myers' O(ND) algorithm after trimming the common head and tail. When the
 * two differ by more than MAX_EDITS lines the middle becomes one replacement:
 * still a correct diff, only a coarser one.
 */
export function diffLines(a: readonly number[], b: readonly number[], maxEdits = MAX_EDITS): LineEdit[] {
  let head = 0
  while (head < a.length && head < b.length && a[head] === b[head]) head++
  let tail = 0
  while (tail < a.length - head && tail < b.length - head && a[a.length - 1 - tail] === b[b.length - 1 - tail]) tail++
  const middleA = a.slice(head, a.length - tail)
  const middleB = b.slice(head, b.length - tail)
  if (middleA.length === 0 && middleB.length === 0) return []
  const whole = [{aStart: head, aEnd: a.length - tail, bStart: head, bEnd: b.length - tail}]
  if (middleA.length === 0 || middleB.length === 0) return whole
  const marks = shortestEdit(middleA, middleB, maxEdits)
  if (!marks) return whole
  return editsOf(marks.deleted, marks.inserted).map((edit) => ({
    aStart: edit.aStart + head,
    aEnd: edit.aEnd + head,
    bStart: edit.bStart + head,
    bEnd: edit.bEnd + head,
  }))
}

/** Which lines of `a` are deleted and which of `b` inserted in a shortest edit script; undefined past `limit` edits. */
function shortestEdit(a: readonly number[], b: readonly number[], limit: number): {deleted: Uint8Array; inserted: Uint8Array} | undefined {
  const n = a.length
  const m = b.length
  const offset = n + m + 1
  const v = new Int32Array(2 * offset + 1)
  const trace: Int32Array[] = []
  for (let d = 0; d <= Math.min(limit, n + m); d++) {
    for (let k = -d; k <= d; k += 2) {
      let x = k === -d || (k !== d && v[offset + k - 1]! < v[offset + k + 1]!) ? v[offset + k + 1]! : v[offset + k - 1]! + 1
      let y = x - k
      while (x < n && y < m && a[x] === b[y]) {
        x++
        y++
      }
      v[offset + k] = x
      if (x >= n && y >= m) {
        trace.push(v.slice(offset - d, offset + d + 1))
        return backtrack(trace, n, m)
      }
    }
    trace.push(v.slice(offset - d, offset + d + 1))
  }
  return undefined
}

function backtrack(trace: Int32Array[], n: number, m: number): {deleted: Uint8Array; inserted: Uint8Array} {
  const deleted = new Uint8Array(n)
  const inserted = new Uint8Array(m)
  let x = n
  let y = m
  for (let d = trace.length - 1; d > 0; d--) {
    const previous = trace[d - 1]!
    const at = (k: number) => previous[k + d - 1]!
    const k = x - y
    const down = k === -d || (k !== d && at(k - 1) < at(k + 1))
    const previousK = down ? k + 1 : k - 1
    const previousX = at(previousK)
    const previousY = previousX - previousK
    if (down) inserted[previousY] = 1
    else deleted[previousX] = 1
    x = previousX
    y = previousY
  }
  return {deleted, inserted}
}

/** Runs of deleted and inserted lines, between the lines both keep (which pair up in order). */
function editsOf(deleted: Uint8Array, inserted: Uint8Array): LineEdit[] {
  const edits: LineEdit[] = []
  let i = 0
  let j = 0
  while (i < deleted.length || j < inserted.length) {
    if (i < deleted.length && j < inserted.length && !deleted[i] && !inserted[j]) {
      i++
      j++
      continue
    }
    const edit = {aStart: i, aEnd: i, bStart: j, bEnd: j}
    while (i < deleted.length && deleted[i]) i++
    while (j < inserted.length && inserted[j]) j++
    edit.aEnd = i
    edit.bEnd = j
    if (edit.aEnd === edit.aStart && edit.bEnd === edit.bStart) throw new Error('line diff: the kept lines of the two sides do not pair up')
    edits.push(edit)
  }
  return edits
}
