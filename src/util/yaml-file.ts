import {relative, isAbsolute} from 'node:path'
import {Document, isMap, isScalar, isSeq, LineCounter, parseDocument, type Node, type Pair} from 'yaml'

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
    if (typeof seg === 'number') out += `[${seg}]`
    else out += out === '' ? seg : `.${seg}`
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

/**
 * A parsed YAML file that remembers where every node came from, so validation
 * can report `file:line:col` for any path in the document.
 */
export class YamlFile {
  readonly issues: Issue[] = []
  readonly doc: Document
  private readonly lines = new LineCounter()

  constructor(
    readonly file: string,
    readonly text: string,
  ) {
    this.doc = parseDocument(text, {lineCounter: this.lines, prettyErrors: false, uniqueKeys: true})
    for (const error of this.doc.errors) {
      const [start] = error.pos
      const {line, col} = this.lines.linePos(start)
      this.issues.push({file, line, col, path: '', message: firstLine(error.message)})
    }
  }

  get ok(): boolean {
    return this.issues.length === 0
  }

  /** The document as plain JavaScript values (undefined for an empty file). */
  toJS(): unknown {
    return this.doc.toJS({maxAliasCount: 100})
  }

  /** Records a problem at `path`; `at: 'key'` points at the map key rather than its value. */
  report(path: readonly PathSegment[], message: string, at: 'key' | 'value' = 'value'): void {
    const {line, col} = this.locate(path, at)
    this.issues.push({file: this.file, line, col, path: formatPath(path), message})
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

function rangeStart(node: unknown): number | undefined {
  const range = (node as Node | null | undefined)?.range
  return range ? range[0] : undefined
}

function firstLine(message: string): string {
  return message.split('\n')[0] ?? message
}

export {isRecord} from './record.js'

/** Reports every key of `value` not in `allowed` as unknown, pointing at the key. */
export function reportUnknownKeys(
  file: YamlFile,
  path: readonly PathSegment[],
  value: Record<string, unknown>,
  allowed: readonly string[],
): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      file.report([...path, key], `unknown key (expected one of: ${allowed.join(', ')})`, 'key')
    }
  }
}

/** Puts `text` as the comment above the key at `path` of a document being built (templates). */
export function commentKey(doc: Document, path: readonly string[], text: string): void {
  const map = path.length === 1 ? doc.contents : doc.getIn(path.slice(0, -1), true)
  const pair = isMap(map) ? map.items.find((item) => isScalar(item.key) && item.key.value === path.at(-1)) : undefined
  if (!pair || !isScalar(pair.key)) throw new Error(`template: no key ${path.join('.')}`)
  pair.key.commentBefore = text
}
