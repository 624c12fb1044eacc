import type {ReportIssue} from '../agents/spec.js'
import {textProblem} from '../agents/validate.js'
import type {PathSegment} from '../util/yaml-file.js'
import {ROUTE_NAME_PATTERN} from './spec.js'

const JSON_PATH = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$/

/** How much one gateway declaration may hold: plugins are untrusted input, read at every cleanroom start. */
export const GATEWAY_LIMITS = {
  maxRoutes: 32,
  maxLogins: 16,
  /** hosts, token_endpoints, api_hosts, tokens, secret sources, omit: each list. */
  maxList: 64,
  /** args, a command's argv, and variables of a route's env. */
  maxStrings: 256,
  maxName: 64,
  maxUrl: 2048,
  /** header names, JSON paths, phantom formats. */
  maxShort: 256,
} as const

/** A list field, each entry parsed; a list over `max` entries is one problem and no entries. */
export function listOf<T>(value: unknown, path: PathSegment[], fail: ReportIssue, parse: (entry: unknown, at: PathSegment[]) => T | undefined, max: number = GATEWAY_LIMITS.maxList): (T | undefined)[] {
  if (value === undefined) return []
  if (!Array.isArray(value)) {
    fail(path, 'must be a list')
    return []
  }
  if (value.length > max) {
    fail(path, `has ${value.length} entries: at most ${max} are allowed`)
    return []
  }
  return value.map((entry, i) => parse(entry, [...path, i]))
}

/** A name of a route or login: the pattern, and at most 64 characters. */
export function isName(value: unknown): value is string {
  return typeof value === 'string' && value.length <= GATEWAY_LIMITS.maxName && ROUTE_NAME_PATTERN.test(value)
}

export function isJsonPath(value: unknown): value is string {
  return typeof value === 'string' && value.length <= GATEWAY_LIMITS.maxShort && JSON_PATH.test(value)
}

/** Strings of a list (args, argv): at most maxStrings, each a text field without control characters. */
export function stringsProblem(value: unknown, nonEmpty: boolean): string | undefined {
  if (!Array.isArray(value) || !value.every((entry) => typeof entry === 'string' && (!nonEmpty || entry !== ''))) return undefined
  if (value.length > GATEWAY_LIMITS.maxStrings) return `has ${value.length} entries: at most ${GATEWAY_LIMITS.maxStrings} are allowed`
  for (const entry of value as string[]) {
    const problem = textProblem(entry)
    if (problem) return `holds a string that ${problem}`
  }
  return undefined
}

export function uniqueNames(entries: readonly ({name?: string} | undefined)[], path: PathSegment[], fail: ReportIssue): void {
  const seen = new Set<string>()
  for (const [i, entry] of entries.entries()) {
    if (entry?.name === undefined) continue
    if (seen.has(entry.name)) fail([...path, i, 'name'], `"${entry.name}" is declared twice`)
    seen.add(entry.name)
  }
}

export function unknownKeys(value: Record<string, unknown>, path: PathSegment[], known: readonly string[], fail: ReportIssue): void {
  for (const key of Object.keys(value)) if (!known.includes(key)) fail([...path, key], `unknown key (expected one of: ${known.join(', ')})`, 'key')
}
