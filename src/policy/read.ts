import {isRecord, reportUnknownKeys, type PathSegment, type YamlFile} from '../util/yaml-file.js'
import {HostPatternError, normalizeHostPattern} from './host.js'
import {ImageRefError, parsePinnedImageRef, type PinnedImageRef} from './image-ref.js'
import {allowRule, denyRule, isPort, mergeAllowRules, mergeDenyRules, notAPort, sortedPorts} from './rules.js'
import {
  IMAGE_KEYS,
  NETWORK_KEYS,
  POLICY_KEYS,
  POLICY_VERSION,
  type PolicyContent,
  RULE_KEYS,
  SANDBOX_KEYS,
} from './schema.js'

type RuleList = 'allow' | 'deny'

/** A rule as read from the file; `ports` undefined means every port (deny only). */
interface RuleEntry {
  host: string
  ports?: number[]
  reason?: string
}

/**
 * Reads a policy strictly: every unknown key, wrong type and bad value is
 * reported on `file` with its line and column, and reading goes on so that one
 * run shows every problem. The result is only meaningful when `file.ok`.
 */
export function readPolicy(file: YamlFile): PolicyContent {
  const policy: PolicyContent = {version: POLICY_VERSION, network_default: 'deny', allow: [], deny: []}
  const root = file.toJS()
  if (root === undefined || root === null) {
    file.report([], 'the policy is empty: it needs at least "version: 1"')
    return policy
  }
  if (!isRecord(root)) {
    file.report([], 'the policy must be a mapping (e.g. version: 1)')
    return policy
  }
  reportUnknownKeys(file, [], root, POLICY_KEYS)
  readVersion(file, root.version)

  const sandbox = readSection(file, ['sandbox'], root.sandbox, SANDBOX_KEYS)
  if (sandbox === undefined) return policy
  const image = readImage(file, sandbox.image)
  const network = readSection(file, ['sandbox', 'network'], sandbox.network, NETWORK_KEYS)
  readNetworkDefault(file, network?.default)
  const allow = readRules(file, 'allow', network?.allow).map((rule) => allowRule(rule.host, rule.ports ?? [], rule.reason))
  const deny = readRules(file, 'deny', network?.deny).map((rule) => denyRule(rule.host, rule.ports, rule.reason))
  const credentials = readCredentialRequests(file, sandbox.credentials)

  return {
    version: POLICY_VERSION,
    ...(image && {image_ref: image.ref, image_digest: image.digest}),
    network_default: 'deny',
    allow: mergeAllowRules(allow),
    deny: mergeDenyRules(deny),
    ...(credentials.length > 0 && {credentials}),
  }
}

/** `sandbox.credentials`: names of credential routes the repository asks for (docs/credentials.md). */
function readCredentialRequests(file: YamlFile, value: unknown): string[] {
  if (value === undefined || value === null) return []
  const path = ['sandbox', 'credentials']
  if (!Array.isArray(value)) {
    file.report(path, 'must be a list of credential route names (e.g. [github]); the runtime config grants them')
    return []
  }
  const names: string[] = []
  for (const [i, name] of value.entries()) {
    if (typeof name === 'string' && /^[a-z][a-z0-9-]*$/.test(name)) names.push(name)
    else file.report([...path, i], 'must be a route name (lower-case letters, digits and -, starting with a letter)')
  }
  return [...new Set(names)].sort()
}

function readVersion(file: YamlFile, value: unknown): void {
  if (value === undefined) file.report(['version'], `is required: add "version: ${POLICY_VERSION}" at the top`)
  else if (value !== POLICY_VERSION) {
    file.report(['version'], `unsupported version ${JSON.stringify(value)}: only version ${POLICY_VERSION} is supported`)
  }
}

function readImage(file: YamlFile, value: unknown): PinnedImageRef | undefined {
  const image = readSection(file, ['sandbox', 'image'], value, IMAGE_KEYS)
  if (image?.ref === undefined || image.ref === null) return undefined
  const path = ['sandbox', 'image', 'ref']
  if (typeof image.ref !== 'string') {
    file.report(path, 'must be a string: a digest-pinned image (repo/image@sha256:<digest>)')
    return undefined
  }
  try {
    return parsePinnedImageRef(image.ref)
  } catch (error) {
    if (!(error instanceof ImageRefError)) throw error
    file.report(path, error.message)
    return undefined
  }
}

/** Like the Go cleanroom: trimmed and lower-cased, empty means deny, and nothing but deny is accepted. */
function readNetworkDefault(file: YamlFile, value: unknown): void {
  if (value === undefined || value === null) return
  const mode = typeof value === 'string' ? value.trim().toLowerCase() : value
  if (mode === '' || mode === 'deny') return
  file.report(['sandbox', 'network', 'default'], `unsupported value ${JSON.stringify(value)}: cleanroom requires deny-by-default`)
}

function readRules(file: YamlFile, list: RuleList, value: unknown): RuleEntry[] {
  const path = ['sandbox', 'network', list]
  if (value === undefined || value === null) return []
  // The Go cleanroom's shorthand: a single "host:port" string is a one-rule list.
  if (typeof value === 'string') return compact([readRule(file, list, path, value)])
  if (!Array.isArray(value)) {
    file.report(path, `must be a list of rules: {host, ports} or "${hostPortExample(list)}"`)
    return []
  }
  return compact(value.map((entry, i) => readRule(file, list, [...path, i], entry)))
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

/** An optional mapping whose keys are checked; absent or empty (null) means undefined. */
function readSection(file: YamlFile, path: PathSegment[], value: unknown, keys: readonly string[]): Record<string, unknown> | undefined {
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) {
    file.report(path, `must be a mapping with ${keys.join(', ')}`)
    return undefined
  }
  reportUnknownKeys(file, path, value, keys)
  return value
}

function hostPortExample(list: RuleList): string {
  return list === 'allow' ? 'host:port' : 'host[:port]'
}

function compact<T>(values: readonly (T | undefined)[]): T[] {
  return values.filter((value): value is T => value !== undefined)
}
