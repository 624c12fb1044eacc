import {relative, isAbsolute} from 'node:path'
import {Document, isMap, isScalar, isSeq, LineCounter, type Node, type Pair} from 'yaml'

import {describeSize} from './bounded-file.js'
import {isRecord, reportUnknownKeys} from './record.js'
import {checkTree, FILE_LIMITS, parseBounded, type SourceProblem, type YamlLimits} from './yaml-bounds.js'

export {describeValue} from './describe-value.js'
export type {YamlLimits} from './yaml-bounds.js'

/** One segment of a path into a YAML document: a map key or a sequence index. */
export type PathSegment = number | string

/** A problem found in a YAML file, located at a line and column (both 1-based). */
export interface Issue {
  file: string
  line: number
  col: number
  /** Dotted path into the document, e.g. `sandbox.network.allow[1].ports[0]`. */
  path: string
  message: string
}

export function formatPath(path: readonly PathSegment[]): string {
  let out = ''
  for (const seg of path) {
    // A key is as long as its author made it; a message need not be.
    const name = typeof seg === 'string' && seg.length > 80 ? `${seg.slice(0, 77)}...` : seg
    if (typeof name === 'number') out += `[${name}]`
    else out += out === '' ? name : `.${name}`
  }
  return out
}

/** `file:line:col path: message`, the form every validation error is printed in. */
export function formatIssue(issue: Issue): string {
  const where = `${issue.file}:${issue.line}:${issue.col}`
  return issue.path === '' ? `${where} ${issue.message}` : `${where} ${issue.path}: ${issue.message}`
}

/** A path for messages: relative to the working directory when inside it. */
export function displayPath(file: string, cwd: string = process.cwd()): string {
  const rel = relative(cwd, file)
  return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel) ? rel : file
}

/** At most this many problems are listed; the rest are counted. */
const MAX_ISSUES = 50

/**
 * A parsed YAML file that remembers where every node came from, so validation
 * can report `file:line:col` for any path in the document. Parsing is bounded
 * (see yaml-bounds.ts): a file over a limit gets one issue saying which, and
 * is not read further.
 */
export class YamlFile {
  readonly issues: Issue[] = []
  readonly doc: Document
  /** Problems found beyond MAX_ISSUES, counted but not kept. */
  private dropped = 0
  private readonly lines = new LineCounter()

  constructor(
    readonly file: string,
    readonly text: string,
    readonly limits: YamlLimits = {what: 'a YAML file', ...FILE_LIMITS},
  ) {
    // A string is at least as many bytes as characters: the byte count is only needed near the limit.
    const bytes = text.length * 3 <= limits.maxBytes ? text.length : Buffer.byteLength(text)
    if (bytes > limits.maxBytes) {
      this.doc = new Document(null)
      this.issues.push({file, line: 1, col: 1, path: '', message: tooLarge(bytes, limits)})
      return
    }
    const parsed = parseBounded(text, limits, this.lines)
    this.doc = parsed.doc ?? new Document(null)
    const problems: SourceProblem[] = parsed.problem ? [parsed.problem] : []
    for (const error of parsed.doc?.errors ?? []) problems.push({offset: error.pos[0], message: firstLine(error.message)})
    if (problems.length === 0 && parsed.doc) problems.push(...checkTree(parsed.doc, limits))
    for (const problem of problems) this.addIssue({...this.lines.linePos(problem.offset), path: '', message: problem.message})
  }

  /**
   * The file's bytes as YAML text: valid UTF-8 (a leading byte order mark is
   * dropped), without NUL or other control characters outside tab and line
   * breaks, within the size limit. Anything else is one issue at its position.
   */
  static fromBytes(file: string, bytes: Uint8Array, limits: YamlLimits): YamlFile {
    if (bytes.length > limits.maxBytes) return YamlFile.tooLarge(file, bytes.length, limits)
    const problem = encodingProblem(bytes)
    if (problem) {
      const before = Buffer.from(bytes.subarray(0, problem.offset)).toString('utf8')
      const line = before.split('\n').length
      const col = before.length - before.lastIndexOf('\n')
      return YamlFile.refused(file, problem.message, limits, {line, col})
    }
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString('utf8')
    return new YamlFile(file, text.startsWith('\uFEFF') ? text.slice(1) : text, limits)
  }

  /** A file of `bytes` bytes, over the limit: refused without reading or parsing it. */
  static tooLarge(file: string, bytes: number, limits: YamlLimits): YamlFile {
    return YamlFile.refused(file, tooLarge(bytes, limits), limits)
  }

  /** A file refused before parsing (too large, not a file, not UTF-8): one issue, an empty document. */
  static refused(file: string, message: string, limits: YamlLimits, at: {line: number; col: number} = {line: 1, col: 1}): YamlFile {
    const refused = new YamlFile(file, '', limits)
    refused.issues.push({file, ...at, path: '', message})
    return refused
  }

  get ok(): boolean {
    return this.issues.length === 0
  }

  /** How many problems were found, those beyond the listed ones included. */
  get problems(): number {
    return this.issues.length + this.dropped
  }

  /** The issues in file order, one `file:line:col path: message` line each, and how many more there were. */
  issueLines(): string[] {
    const lines = this.issues.toSorted((a, b) => a.line - b.line || a.col - b.col).map((issue) => formatIssue(issue))
    if (this.dropped > 0) lines.push(`… and ${this.dropped} more problem${this.dropped === 1 ? '' : 's'} (fix the ones above first)`)
    return lines
  }

  /** The document as plain JavaScript values (undefined for an empty file). */
  toJS(): unknown {
    // Aliases were counted and bounded by checkTree; toJS shares an anchor's value rather than copying it.
    return this.doc.toJS({maxAliasCount: -1})
  }

  /** Records a problem at `path`; `at: 'key'` points at the map key rather than its value. */
  report(path: readonly PathSegment[], message: string, at: 'key' | 'value' = 'value'): void {
    if (this.issues.length >= MAX_ISSUES) {
      this.dropped++
      return
    }
    const {line, col} = this.locate(path, at)
    this.issues.push({file: this.file, line, col, path: formatPath(path), message})
  }

  private addIssue(issue: Omit<Issue, 'file'>): void {
    if (this.issues.length >= MAX_ISSUES) this.dropped++
    else this.issues.push({file: this.file, ...issue})
  }

  /**
   * The text a scalar at `path` was written as (`1.0`, `0x10`, `true`), for
   * fields that take text where YAML reads a number or boolean; undefined when
   * no scalar is there.
   */
  scalarSource(path: readonly PathSegment[]): string | undefined {
    let node: unknown = this.doc.contents
    for (const seg of path) {
      if (isMap(node) && typeof seg === 'string') node = node.items.find((p: Pair) => isScalar(p.key) && String(p.key.value) === seg)?.value
      else if (isSeq(node) && typeof seg === 'number') node = node.items[seg]
      else return undefined
    }
    if (!isScalar(node) || node.value === null) return undefined
    return typeof node.value === 'string' ? node.value : (node.source ?? String(node.value))
  }

  /** Line and column of the node at `path`, or of its nearest existing ancestor. */
  locate(path: readonly PathSegment[], at: 'key' | 'value' = 'value'): {line: number; col: number} {
    let node: unknown = this.doc.contents
    let offset = rangeStart(node) ?? 0
    for (const [i, seg] of path.entries()) {
      const last = i === path.length - 1
      if (isMap(node) && typeof seg === 'string') {
        const pair = node.items.find((p: Pair) => isScalar(p.key) && String(p.key.value) === seg)
        if (!pair) break
        const keyStart = rangeStart(pair.key)
        if (last && at === 'key' && keyStart !== undefined) {
          offset = keyStart
          break
        }
        node = pair.value
        offset = rangeStart(node) ?? keyStart ?? offset
      } else if (isSeq(node) && typeof seg === 'number') {
        node = node.items[seg]
        const start = rangeStart(node)
        if (start === undefined) break
        offset = start
      } else {
        break
      }
    }
    return this.lines.linePos(offset)
  }
}

function tooLarge(bytes: number, limits: YamlLimits): string {
  return `is ${describeSize(bytes)}: ${limits.what} may be at most ${describeSize(limits.maxBytes)}`
}

/** The first byte that makes `bytes` not UTF-8 YAML text, and why. */
function encodingProblem(bytes: Uint8Array): SourceProblem | undefined {
  if ((bytes[0] === 0xff && bytes[1] === 0xfe) || (bytes[0] === 0xfe && bytes[1] === 0xff)) {
    return {offset: 0, message: 'is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8'}
  }
  for (let i = 0; i < bytes.length; ) {
    const byte = bytes[i]!
    if (byte < 0x80) {
      if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte === 0x7f) {
        return {offset: i, message: `contains the control character U+${byte.toString(16).toUpperCase().padStart(4, '0')}${byte === 0 ? ' (NUL)' : ''}: remove it`}
      }
      i++
      continue
    }
    const length = utf8SequenceLength(bytes, i)
    if (length === 0) return {offset: i, message: `is not valid UTF-8 (byte 0x${byte.toString(16).padStart(2, '0')} at offset ${i}): save it as UTF-8`}
    if (i > 0 && bytes[i] === 0xef && bytes[i + 1] === 0xbb && bytes[i + 2] === 0xbf) return {offset: i, message: 'has a byte order mark (U+FEFF) after its start: remove it'}
    i += length
  }
  return undefined
}

/** The length of the well-formed UTF-8 sequence at `i` (RFC 3629: no overlongs, surrogates or values past U+10FFFF), or 0. */
function utf8SequenceLength(bytes: Uint8Array, i: number): number {
  const b0 = bytes[i]!
  const continuation = (k: number, min = 0x80, max = 0xbf) => {
    const b = bytes[i + k]
    return b !== undefined && b >= min && b <= max
  }
  if (b0 >= 0xc2 && b0 <= 0xdf) return continuation(1) ? 2 : 0
  if (b0 >= 0xe0 && b0 <= 0xef) {
    const [min, max] = b0 === 0xe0 ? [0xa0, 0xbf] : b0 === 0xed ? [0x80, 0x9f] : [0x80, 0xbf]
    return continuation(1, min, max) && continuation(2) ? 3 : 0
  }
  if (b0 >= 0xf0 && b0 <= 0xf4) {
    const [min, max] = b0 === 0xf0 ? [0x90, 0xbf] : b0 === 0xf4 ? [0x80, 0x8f] : [0x80, 0xbf]
    return continuation(1, min, max) && continuation(2) && continuation(3) ? 4 : 0
  }
  return 0
}

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range
  return range ? range[0] : undefined
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}


/** An optional mapping whose keys are checked; absent or empty (null) means undefined. */
export function readSection(file: YamlFile, path: readonly PathSegment[], value: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) {
    file.report(path, `must be a mapping with ${keys.join(', ')}`)
    return undefined
  }
  reportUnknownKeys(file, path, value, keys)
  return value
}

/** Puts `text` as the comment above the key at `path` of a document being built (templates). */
export function commentKey(doc: Document, path: readonly string[], text: string): void {
  const map = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true)
  const pair = isMap(map) ? map.items.find((item) => isScalar(item.key) && item.key.value === path.at(-1)) : undefined
  if (!pair || !isScalar(pair.key)) throw new Error(`template: no key ${path.join('.')}`)
  pair.key.commentBefore = text
}
