import {Composer, CST, type Document, isAlias, isMap, isPair, isScalar, isSeq, Lexer, type LineCounter, type Node, Parser} from 'yaml'

import type {YamlLimits} from './file-limits.js'

export {FILE_LIMITS, type YamlLimits} from './file-limits.js'

/** A problem found before or while composing, at a source offset. */
export interface SourceProblem {
  offset: number
  message: string
}

/** A parsed document, or the first limit the file went over (then the document is empty). */
export interface BoundedParse {
  doc?: Document.Parsed
  problem?: SourceProblem
}

class LimitExceeded extends Error {
  constructor(readonly offset: number, message: string) {
    super(message)
  }
}

const VALUE_TOKENS = new Set(['scalar', 'single-quoted-scalar', 'double-quoted-scalar', 'alias', 'flow-map-start', 'flow-seq-start'])

/**
 * Parses one YAML document, stopping at the first limit it goes over. The
 * yaml package's parser is driven lexeme by lexeme so that values, lines and
 * nesting are counted before the work they cause is done.
 */
export function parseBounded(text: string, limits: YamlLimits, lines: LineCounter): BoundedParse {
  const parser = new Parser(lines.addNewLine)
  lines.addNewLine(0)
  let values = 0
  let lineCount = 1
  let afterScalarMark = false
  function* tokens(): Generator<CST.Token> {
    for (const lexeme of new Lexer().lex(text)) {
      // The lexeme after a scalar mark is the scalar's text: its first character says nothing.
      const type = afterScalarMark ? undefined : CST.tokenType(lexeme)
      afterScalarMark = type === 'scalar'
      if (type !== undefined && type !== null && VALUE_TOKENS.has(type) && ++values > limits.maxValues) {
        throw new LimitExceeded(parser.offset, `has more than ${limits.maxValues} keys and values: ${limits.what} may have at most ${limits.maxValues}`)
      }
      yield* parser.next(lexeme)
      // Checked once the parser has taken the line break: the line over the limit starts at its offset now.
      if (type === 'newline' && ++lineCount > limits.maxLines) {
        throw new LimitExceeded(parser.offset, `has more than ${limits.maxLines} lines: ${limits.what} may have at most ${limits.maxLines}`)
      }
      // The parser's stack holds the document and each collection open around this point.
      if (parser.stack.length - 1 > limits.maxDepth) {
        throw new LimitExceeded(parser.offset, `is nested more than ${limits.maxDepth} levels deep: ${limits.what} may nest at most ${limits.maxDepth}`)
      }
    }
    yield* parser.end()
  }
  // uniqueKeys is checked by checkTree instead: the yaml package compares every key with every other (quadratic).
  const composer = new Composer({uniqueKeys: false, prettyErrors: false})
  try {
    let doc: Document.Parsed | undefined
    for (const next of composer.compose(tokens(), true, text.length)) {
      if (doc !== undefined) return {doc, problem: {offset: next.range[0], message: `is more than one YAML document: ${limits.what} is one document (remove the second "---")`}}
      doc = next
    }
    return {doc}
  } catch (error) {
    if (error instanceof LimitExceeded) return {problem: {offset: error.offset, message: error.message}}
    throw error
  }
}

/**
 * Checks a composed document for what the parser lets through: duplicate
 * keys (also "1" and 1, which become the same key), keys that are not plain
 * values, aliases to anchors not defined before them or to the value they sit
 * in, too many aliases or too many values once aliases are expanded, and
 * control characters in keys and values (NUL, escape sequences). Returns the
 * problems at the nodes they concern.
 */
export function checkTree(doc: Document.Parsed, limits: YamlLimits): SourceProblem[] {
  const problems: SourceProblem[] = []
  /** Size of each anchor's value, once it is complete. */
  const anchors = new Map<string, number>()
  const open = new Set<string>()
  let aliases = 0
  /** Values seen so far in document order, each alias counted as the values it stands for. */
  let expanded = 0
  const grow = (node: Node | null | undefined, count: number) => {
    const before = expanded
    expanded += count
    if (before <= limits.maxValues && expanded > limits.maxValues) {
      at(node, `has more than ${limits.maxValues} keys and values once its aliases are expanded: ${limits.what} may have at most ${limits.maxValues}`)
    }
  }

  const at = (node: Node | null | undefined, message: string) => problems.push({offset: node?.range?.[0] ?? 0, message})

  // Recursion is bounded: parseBounded refused anything nested deeper than maxDepth.
  const size = (node: unknown): number => {
    if (isAlias(node)) {
      if (++aliases > limits.maxAliases) {
        if (aliases === limits.maxAliases + 1) at(node, `has more than ${limits.maxAliases} aliases (*name): ${limits.what} may have at most ${limits.maxAliases}`)
        return 1
      }
      const known = anchors.get(node.source)
      if (known !== undefined) {
        grow(node, known)
        return known
      }
      at(node, open.has(node.source) ? `alias *${node.source} refers to the value it is part of` : `alias *${node.source} has no anchor &${node.source} before it`)
      return 1
    }
    const anchor = (node as Node | null)?.anchor
    if (anchor) open.add(anchor)
    grow(node as Node | null, 1)
    let count = 1
    if (isScalar(node)) {
      if (typeof node.value === 'string') {
        const control = /[\0-\x08\v\f\x0E-\x1F\x7F-\x9F]/.exec(node.value)
        if (control) at(node, `contains the control character U+${control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}: remove it`)
      }
    } else if (isMap(node)) {
      const seen = new Set<string>()
      for (const pair of node.items) {
        if (!isPair(pair)) continue
        if (!isScalar(pair.key)) {
          at(pair.key as Node | null, 'a key must be a plain value (text or a number), not a collection or an alias')
        } else {
          const key = String(pair.key.value)
          if (seen.has(key)) at(pair.key, 'Map keys must be unique')
          seen.add(key)
        }
        count += size(pair.key) + size(pair.value)
      }
    } else if (isSeq(node)) {
      for (const item of node.items) count += size(item)
    }
    if (anchor) {
      open.delete(anchor)
      anchors.set(anchor, count)
    }
    return count
  }

  size(doc.contents)
  return problems
}
