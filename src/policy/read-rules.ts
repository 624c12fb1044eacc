import type {PathSegment, YamlFile} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import {HostPatternError, normalizeHostPattern} from './host.js'
import {isPort, notAPort, sortedPorts} from './rules.js'
import {POLICY_LIMITS, RULE_KEYS} from './schema.js'

export type RuleList = 'allow' | 'deny'

/** A rule as read from the file; `ports` undefined means every port (deny only). */
export interface RuleEntry {
  host: string
  ports?: number[]
  reason?: string
}

/** How many more rules the policy may have. */
export interface RuleBudget {
  left: number
}

export function ruleBudget(): RuleBudget {
  return {left: POLICY_LIMITS.maxRules}
}

/**
 * The rules of one list (`sandbox.network.allow`, `.deny`, a stage's `allow`)
 * at `path`: a list of `{host, ports, reason}` or `"host:port"` entries, or a
 * single string. Absent or empty means none. Rules count against `budget`,
 * which is checked before any rule of the list is read.
 */
export function readRules(file: YamlFile, list: RuleList, path: PathSegment[], value: unknown, budget: RuleBudget): RuleEntry[] {
  if (value === undefined || value === null) return []
  // The Go cleanroom's shorthand: a single "host:port" string is a one-rule list.
  const entries = typeof value === 'string' ? [value] : value
  if (!Array.isArray(entries)) {
    file.report(path, `must be a list of rules: {host, ports} or "${hostPortExample(list)}"`)
    return []
  }
  if (entries.length > budget.left) {
    file.report(path, `has ${entries.length} rules, more than the ${POLICY_LIMITS.maxRules} a policy may have in all (allow, deny and stage allow lists together)`)
    budget.left = 0
    return []
  }
  budget.left -= entries.length
  if (typeof value === 'string') return compact([readRule(file, list, path, value)])
  return compact(entries.map((entry, i) => readRule(file, list, [...path, i], entry)))
}

function readRule(file: YamlFile, list: RuleList, path: PathSegment[], entry: unknown): RuleEntry | undefined {
  if (typeof entry === 'string') return readHostPortRule(file, list, path, entry)
  if (!isRecord(entry)) {
    file.report(path, `must be {host, ports} or "${hostPortExample(list)}"`)
    return undefined
  }
  reportUnknownKeys(file, path, entry, RULE_KEYS)
  const host = readHost(file, list, [...path, 'host'], entry.host)
  const everyPort = list === 'deny' && (entry.ports === undefined || entry.ports === null)
  const ports = everyPort ? undefined : readPorts(file, list, [...path, 'ports'], entry.ports)
  const reason = readReason(file, [...path, 'reason'], entry.reason)
  if (host === undefined || (ports === undefined && !everyPort)) return undefined
  return {host, ...(ports && {ports}), ...(reason !== undefined && {reason})}
}

function readHost(file: YamlFile, list: RuleList, path: PathSegment[], value: unknown): string | undefined {
  if (value === undefined || value === null) {
    file.report(path, `is required: the host to ${list} (a name, *.domain, IP address or CIDR)`)
    return undefined
  }
  if (typeof value !== 'string') {
    file.report(path, 'must be a string: a name, *.domain, IP address or CIDR')
    return undefined
  }
  return hostPattern(file, path, value)
}

function hostPattern(file: YamlFile, path: PathSegment[], text: string): string | undefined {
  try {
    return normalizeHostPattern(text)
  } catch (error) {
    if (!(error instanceof HostPatternError)) throw error
    file.report(path, error.message)
    return undefined
  }
}

function readPorts(file: YamlFile, list: RuleList, path: PathSegment[], value: unknown): number[] | undefined {
  if (value === undefined || value === null) {
    file.report(path, 'is required: the ports to allow (e.g. [443])')
    return undefined
  }
  if (!Array.isArray(value)) {
    file.report(path, 'must be a list of ports (e.g. [443])')
    return undefined
  }
  if (value.length === 0) {
    const fix = list === 'deny' ? '; leave ports out to deny every port' : ''
    file.report(path, `must list at least one port (1-65535)${fix}`)
    return undefined
  }
  const ports: number[] = []
  for (const [i, port] of value.entries()) {
    if (isPort(port)) ports.push(port)
    else file.report([...path, i], notAPort(port))
  }
  return ports.length === value.length ? sortedPorts(ports) : undefined
}

function readReason(file: YamlFile, path: PathSegment[], value: unknown): string | undefined {
  if (value === undefined || value === null) return undefined
  if (typeof value !== 'string') {
    file.report(path, 'must be a string')
    return undefined
  }
  return value.trim() === '' ? undefined : value.trim()
}

/**
 * `host:port`, `[ipv6]:port` or, in deny, a host alone (every port). IPv6
 * addresses need the brackets, or the port could not be told apart.
 */
function readHostPortRule(file: YamlFile, list: RuleList, path: PathSegment[], raw: string): RuleEntry | undefined {
  const text = raw.trim()
  const split = splitHostPort(text)
  if (typeof split === 'string') {
    file.report(path, split)
    return undefined
  }
  if (split.port === undefined && list === 'allow') {
    file.report(path, `${JSON.stringify(text)} has no port: write "${split.host}:443" or {host: ${split.host}, ports: [443]}`)
    return undefined
  }
  const host = hostPattern(file, path, split.host)
  if (split.port === undefined) return host === undefined ? undefined : {host}
  const port = /^\d+$/.test(split.port) ? Number(split.port) : split.port
  if (!isPort(port)) {
    file.report(path, notAPort(port))
    return undefined
  }
  return host === undefined ? undefined : {host, ports: [port]}
}

/** The host and port text of a `host:port` string, or why it cannot be split. */
function splitHostPort(text: string): string | {host: string; port?: string} {
  if (text.includes('://')) return `${JSON.stringify(text)} is a URL: write host:port (e.g. "github.com:443")`
  if (text.startsWith('[')) {
    const close = text.indexOf(']')
    if (close < 0) return `${JSON.stringify(text)} is missing its closing "]"`
    const host = text.slice(0, close + 1)
    const rest = text.slice(close + 1)
    if (rest === '') return {host}
    if (!rest.startsWith(':')) return `${JSON.stringify(text)}: expected "[address]:port" (e.g. "[2001:db8::1]:443")`
    return {host, port: rest.slice(1)}
  }
  const parts = text.split(':')
  if (parts.length > 2) return `${JSON.stringify(text)}: put an IPv6 address in brackets (e.g. "[2001:db8::1]:443")`
  const [host = '', port] = parts
  return port === undefined ? {host} : {host, port}
}

function hostPortExample(list: RuleList): string {
  return list === 'allow' ? 'host:port' : 'host[:port]'
}

function compact<T>(values: readonly (T | undefined)[]): T[] {
  return values.filter((value): value is T => value !== undefined)
}
