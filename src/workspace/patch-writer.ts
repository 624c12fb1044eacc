import {once} from 'node:events'
import {constants as zlib, createDeflate} from 'node:zlib'

import {type EntryState, type ObjectFormat, zeroOid} from './entry.js'
import {diffLines, type LineEdit} from './line-diff.js'

/** Files up to this size on both sides are compared line by line; larger ones are written as binary patches. */
export const TEXT_DIFF_LIMIT = 4 << 20
/** git's test for binary content: a NUL byte in the first 8000 bytes. */
const BINARY_SNIFF = 8000
const CONTEXT = 3

/** One path of the patch: what the host has (the `a` side) and what the sandbox has (`b`); null is nothing. */
export interface PatchPath {
  path: string
  host: EntryState | null
  sandbox: EntryState | null
}

/** The bytes of one side's entry, checked against the state given. */
export type ContentReader = (path: string, state: EntryState) => AsyncIterable<Buffer>

/**
 * The git-style patch (what `git apply` applies, and `git diff --binary` writes)
 * for one path, as it is produced: text files as unified hunks, anything
 * binary or over TEXT_DIFF_LIMIT as a `GIT binary patch` literal deflated and
 * encoded on the fly, so memory stays bounded whatever the file's size. A type
 * change (file to symlink) is a deletion and an addition, as git writes it.
 */
export async function* patchOfPath(change: PatchPath, read: {host: ContentReader; sandbox: ContentReader}, format: ObjectFormat): AsyncGenerator<Buffer> {
  const {host, sandbox} = change
  if (host && sandbox && isLink(host) !== isLink(sandbox)) {
    yield* block(change.path, host, null, read, format)
    yield* block(change.path, null, sandbox, read, format)
    return
  }
  yield* block(change.path, host, sandbox, read, format)
}

async function* block(path: string, a: EntryState | null, b: EntryState | null, read: {host: ContentReader; sandbox: ContentReader}, format: ObjectFormat): AsyncGenerator<Buffer> {
  const header = [`diff --git ${quotePath(`a/${path}`)} ${quotePath(`b/${path}`)}`]
  if (!a) header.push(`new file mode ${b!.mode}`)
  else if (!b) header.push(`deleted file mode ${a.mode}`)
  else if (a.mode !== b.mode) header.push(`old mode ${a.mode}`, `new mode ${b.mode}`)
  if (a && b && a.oid === b.oid) {
    yield lines(header)
    return
  }
  const index = `index ${a?.oid ?? zeroOid(format)}..${b?.oid ?? zeroOid(format)}${a && b && a.mode === b.mode ? ` ${a.mode}` : ''}`
  const small = (a?.size ?? 0) <= TEXT_DIFF_LIMIT && (b?.size ?? 0) <= TEXT_DIFF_LIMIT
  const before = small && a ? await collect(read.host(path, a)) : undefined
  const after = small && b ? await collect(read.sandbox(path, b)) : undefined
  if (small && !isBinary(before) && !isBinary(after)) {
    header.push(index)
    if ((a?.size ?? 0) === 0 && (b?.size ?? 0) === 0) {
      yield lines(header)
      return
    }
    header.push(`--- ${a ? quotePath(`a/${path}`) : '/dev/null'}`, `+++ ${b ? quotePath(`b/${path}`) : '/dev/null'}`)
    yield lines(header)
    yield* hunks(before ?? Buffer.alloc(0), after ?? Buffer.alloc(0))
    return
  }
  header.push(index, 'GIT binary patch')
  yield lines(header)
  const content = after ? [after] : b ? read.sandbox(path, b) : []
  yield* binaryLiteral(content, b?.size ?? 0)
  yield Buffer.from('\n')
}

function isLink(state: EntryState): boolean {
  return state.mode === '120000'
}

function isBinary(content: Buffer | undefined): boolean {
  return content !== undefined && content.subarray(0, BINARY_SNIFF).includes(0)
}

function lines(texts: string[]): Buffer {
  return Buffer.from(`${texts.join('\n')}\n`)
}

async function collect(chunks: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = []
  for await (const chunk of chunks) parts.push(chunk)
  return Buffer.concat(parts)
}

/** Unified hunks with three lines of context; lines are compared as bytes. */
function* hunks(before: Buffer, after: Buffer): Generator<Buffer> {
  const a = splitLines(before)
  const b = splitLines(after)
  const ids = new Map<string, number>()
  const number = (line: Buffer) => {
    const key = line.toString('latin1')
    let id = ids.get(key)
    if (id === undefined) ids.set(key, (id = ids.size))
    return id
  }
  const edits = diffLines(a.map(number), b.map(number))
  for (const group of groupEdits(edits)) {
    const first = group[0]!
    const last = group.at(-1)!
    const aLow = Math.max(0, first.aStart - CONTEXT)
    const bLow = first.bStart - (first.aStart - aLow)
    const aHigh = Math.min(a.length, last.aEnd + CONTEXT)
    const bHigh = last.bEnd + (aHigh - last.aEnd)
    const out: Buffer[] = [Buffer.from(`@@ -${range(aLow, aHigh - aLow)} +${range(bLow, bHigh - bLow)} @@\n`)]
    const emit = (mark: string, line: Buffer) => {
      out.push(Buffer.from(mark), line)
      if (line.at(-1) !== 0x0a) out.push(Buffer.from('\n\\ No newline at end of file\n'))
    }
    let i = aLow
    for (const edit of group) {
      for (; i < edit.aStart; i++) emit(' ', a[i]!)
      for (let k = edit.aStart; k < edit.aEnd; k++) emit('-', a[k]!)
      for (let k = edit.bStart; k < edit.bEnd; k++) emit('+', b[k]!)
      i = edit.aEnd
    }
    for (; i < aHigh; i++) emit(' ', a[i]!)
    yield Buffer.concat(out)
  }
}

/** Edits close enough that their contexts touch share one hunk. */
function groupEdits(edits: LineEdit[]): LineEdit[][] {
  const groups: LineEdit[][] = []
  for (const edit of edits) {
    const current = groups.at(-1)
    if (current && edit.aStart - current.at(-1)!.aEnd <= 2 * CONTEXT) current.push(edit)
    else groups.push([edit])
  }
  return groups
}

/** A hunk range: `start,count`, 1-based; the count left out when 1; an empty range starts at the line before it. */
function range(low: number, count: number): string {
  if (count === 1) return `${low + 1}`
  return count === 0 ? `${low},0` : `${low + 1},${count}`
}

/** The lines of `content`, each with its newline (the last may have none). */
function splitLines(content: Buffer): Buffer[] {
  const result: Buffer[] = []
  let start = 0
  while (start < content.length) {
    const end = content.indexOf(0x0a, start)
    const stop = end === -1 ? content.length : end + 1
    result.push(content.subarray(start, stop))
    start = stop
  }
  return result
}

const BASE85 = Buffer.from('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz!#$%&()*+-;<=>?@^_`{|}~')
/** git writes at most 52 deflated bytes per line: a length letter, 65 base-85 digits and a newline. */
const LINE_BYTES = 52
const LINE_CHARS = 1 + (LINE_BYTES / 4) * 5 + 1
/** Larger files are stored in the patch uncompressed: deflating them costs more time than the bytes it saves are worth. */
const STORE_ABOVE = 64 << 20

/** `literal <size>` and the deflated content in git's base-85 lines, produced as the content streams in. */
export async function* binaryLiteral(content: AsyncIterable<Buffer> | Buffer[], size: number): AsyncGenerator<Buffer> {
  yield Buffer.from(`literal ${size}\n`)
  const deflate = createDeflate({level: size > STORE_ABOVE ? zlib.Z_NO_COMPRESSION : zlib.Z_BEST_SPEED, chunkSize: 64 << 10})
  void (async () => {
    for await (const chunk of content) if (!deflate.write(chunk)) await once(deflate, 'drain')
    deflate.end()
  })().catch((error: unknown) => deflate.destroy(error as Error))
  let pending: Buffer = Buffer.alloc(0)
  for await (const chunk of deflate) {
    const bytes = pending.length === 0 ? (chunk as Buffer) : Buffer.concat([pending, chunk as Buffer])
    const whole = bytes.length - (bytes.length % LINE_BYTES)
    if (whole > 0) yield encodeLines(bytes.subarray(0, whole))
    pending = bytes.subarray(whole)
  }
  if (pending.length > 0) yield encodeLines(pending)
}

/** git's base-85 lines for `bytes`: 52 bytes a line, the last one shorter. */
function encodeLines(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(Math.ceil(bytes.length / LINE_BYTES) * LINE_CHARS)
  let at = 0
  for (let line = 0; line < bytes.length; line += LINE_BYTES) {
    const length = Math.min(LINE_BYTES, bytes.length - line)
    out[at++] = length <= 26 ? 0x41 + length - 1 : 0x61 + length - 27
    for (let i = line; i < line + length; i += 4) {
      let group = ((bytes[i]! << 24) | ((i + 1 < line + length ? bytes[i + 1]! : 0) << 16) | ((i + 2 < line + length ? bytes[i + 2]! : 0) << 8) | (i + 3 < line + length ? bytes[i + 3]! : 0)) >>> 0
      for (let digit = 4; digit >= 0; digit--) {
        out[at + digit] = BASE85[group % 85]!
        group = Math.floor(group / 85)
      }
      at += 5
    }
    out[at++] = 0x0a
  }
  return out.subarray(0, at)
}

const QUOTED: Record<number, string> = {7: 'a', 8: 'b', 9: 't', 10: 'n', 11: 'v', 12: 'f', 13: 'r', 34: '"', 92: '\\'}

/** A path as git writes it in a patch: C-quoted, with octal escapes for control and non-ASCII bytes, when it has any. */
export function quotePath(path: string): string {
  const bytes = Buffer.from(path)
  if (!bytes.some((byte) => byte < 0x20 || byte >= 0x7f || byte === 0x22 || byte === 0x5c)) return path
  let out = '"'
  for (const byte of bytes) {
    const short = QUOTED[byte]
    if (short) out += `\\${short}`
    else if (byte < 0x20 || byte >= 0x7f) out += `\\${byte.toString(8).padStart(3, '0')}`
    else out += String.fromCharCode(byte)
  }
  return `${out}"`
}
