import {isIP} from 'node:net'

import {validateCredentialSource, validateCredentialTarget} from '../agents/credential-paths.js'
import {AGENT_SPEC_LIMITS, type ReportIssue} from '../agents/spec.js'
import {textProblem} from '../agents/validate.js'
import {HostPatternError, hostKind, normalizeHostPattern} from '../policy/host.js'
import {isPort} from '../policy/rules.js'
import {isEnvName} from '../util/env-name.js'
import type {PathSegment} from '../util/yaml-file.js'
import {isRecord} from '../util/record.js'
import {type GatewaySpec, type HostPort, type LoginSpec, type RouteSpec, type SecretSource, TOKEN_KINDS, type TokenField, type TokenKind} from './spec.js'
import {GATEWAY_LIMITS, isJsonPath, isName, listOf, stringsProblem, uniqueNames, unknownKeys} from './validate-fields.js'

/** Where a declaration comes from: command and value sources are the runtime config's alone. */
export interface GatewayTrust {
  /** `command` and `value` secret sources may be used. */
  runtimeConfig: boolean
}

const GATEWAY_KEYS = ['routes', 'logins']
const ROUTE_KEYS = ['name', 'upstream', 'header', 'format', 'secret', 'env', 'args', 'phantom_format', 'hosts', 'alternative_to']
const LOGIN_KEYS = ['name', 'file', 'tokens', 'expires', 'refreshed_at', 'omit', 'token_endpoints', 'api_hosts', 'login_command']
const HEADER_NAME = /^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/
const PHANTOM_FORMAT = /^[A-Za-z0-9._-]*\{\}[A-Za-z0-9._-]*$/
const DEFAULT_COMMAND_TTL_SECONDS = 900

/** An agent's `gateway` block: every problem goes to `fail`; undefined when there was any. */
export function parseGateway(value: unknown, path: PathSegment[], fail: ReportIssue, trust: GatewayTrust): GatewaySpec | undefined {
  let problems = 0
  const report: ReportIssue = (at, message, where) => {
    problems++
    fail(at, message, where)
  }
  if (!isRecord(value)) {
    report(path, 'must be a mapping with routes and logins')
    return undefined
  }
  unknownKeys(value, path, GATEWAY_KEYS, report)
  const routes = listOf(value.routes, [...path, 'routes'], report, (entry, at) => parseRoute(entry, at, report, trust, true), GATEWAY_LIMITS.maxRoutes)
  const logins = listOf(value.logins, [...path, 'logins'], report, (entry, at) => parseLogin(entry, at, report), GATEWAY_LIMITS.maxLogins)
  uniqueNames(routes, [...path, 'routes'], report)
  uniqueNames(logins, [...path, 'logins'], report)
  return problems === 0 ? {routes: routes as RouteSpec[], logins: logins as LoginSpec[]} : undefined
}

/**
 * A route of the runtime config's `credentials.routes`: a new route (every
 * field), or changes to an agent's route of that name (any field).
 */
export function parseRouteOverride(value: unknown, name: string, path: PathSegment[], fail: ReportIssue): Partial<RouteSpec> | undefined {
  let problems = 0
  const report: ReportIssue = (at, message, where) => {
    problems++
    fail(at, message, where)
  }
  const shown = name.slice(0, GATEWAY_LIMITS.maxName)
  if (!isName(name)) report(path, `"${shown}" is not a valid route name (lower-case letters, digits and -, starting with a letter; at most 64)`, 'key')
  const route = parseRoute(isRecord(value) ? {...value, name} : value, path, report, {runtimeConfig: true}, false)
  return problems === 0 ? route : undefined
}

function parseRoute(value: unknown, path: PathSegment[], fail: ReportIssue, trust: GatewayTrust, complete: boolean): Partial<RouteSpec> | undefined {
  if (!isRecord(value)) {
    fail(path, 'must be a mapping with name, upstream, header, format, secret and env')
    return undefined
  }
  unknownKeys(value, path, ROUTE_KEYS, fail)
  const route: Partial<RouteSpec> = {}
  const field = (key: string) => [...path, key]
  if (!isName(value.name)) fail(field('name'), 'must be a route name (lower-case letters, digits and -, starting with a letter; at most 64)')
  else route.name = value.name
  if (value.upstream !== undefined || complete) {
    const problem = upstreamProblem(value.upstream)
    if (problem) fail(field('upstream'), problem)
    else route.upstream = (value.upstream as string).replace(/\/+$/, '')
  }
  if (value.header !== undefined || complete) {
    if (typeof value.header !== 'string' || value.header.length > GATEWAY_LIMITS.maxShort || !HEADER_NAME.test(value.header)) fail(field('header'), 'must be an HTTP header name, e.g. x-api-key')
    else route.header = value.header.toLowerCase()
  }
  if (value.format !== undefined || complete) {
    if (typeof value.format !== 'string' || value.format.length > GATEWAY_LIMITS.maxUrl || !value.format.includes('{}') || /[\r\n\0]/.test(value.format)) fail(field('format'), 'must be the header value with {} where the secret goes, e.g. "Bearer {}"')
    else route.format = value.format
  }
  if (value.secret !== undefined || complete) {
    const secret = parseSecretSources(value.secret, field('secret'), fail, trust)
    if (secret) route.secret = secret
  }
  if (value.env !== undefined || complete) {
    const env = stringMap(value.env ?? {}, field('env'), fail)
    if (env) route.env = env
  }
  if (value.args !== undefined) {
    const problem = Array.isArray(value.args) && value.args.every((arg) => typeof arg === 'string') ? stringsProblem(value.args, false) : 'must be a list of strings'
    if (problem) fail(field('args'), problem)
    else route.args = value.args as string[]
  }
  if (value.phantom_format !== undefined) {
    if (typeof value.phantom_format !== 'string' || value.phantom_format.length > GATEWAY_LIMITS.maxShort || !PHANTOM_FORMAT.test(value.phantom_format)) fail(field('phantom_format'), 'must hold {} once, with letters, digits, ".", "_" or "-" around it, e.g. sk-ant-api03-{}')
    else route.phantom_format = value.phantom_format
  }
  if (value.hosts !== undefined) {
    const hosts = listOf(value.hosts, field('hosts'), fail, (entry, at) => parseHostEntry(entry, at, fail))
    if (hosts.every((host) => host !== undefined)) route.hosts = hosts as HostPort[]
  }
  if (value.alternative_to !== undefined) {
    if (!isName(value.alternative_to)) fail(field('alternative_to'), 'must name a login')
    else route.alternative_to = value.alternative_to
  }
  return route
}

/** Why `value` cannot be a route's upstream, or undefined. */
export function upstreamProblem(value: unknown): string | undefined {
  const rule = 'must be an https:// URL (http:// only for a loopback address), e.g. https://api.anthropic.com'
  if (typeof value !== 'string') return rule
  if (value.length > GATEWAY_LIMITS.maxUrl) return `is ${value.length} characters long: at most ${GATEWAY_LIMITS.maxUrl} are allowed`
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return rule
  }
  if (url.username !== '' || url.password !== '' || url.search !== '' || url.hash !== '') return 'must not hold a user, a query or a fragment'
  const host = url.hostname.replace(/^\[|\]$/g, '')
  const loopback = host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'))
  if (url.protocol === 'https:' || (url.protocol === 'http:' && loopback)) return undefined
  return rule
}

function parseSecretSources(value: unknown, path: PathSegment[], fail: ReportIssue, trust: GatewayTrust): SecretSource[] | undefined {
  const entries = Array.isArray(value) ? value : [value]
  if (entries.length > GATEWAY_LIMITS.maxList) {
    fail(path, `has ${entries.length} entries: at most ${GATEWAY_LIMITS.maxList} are allowed`)
    return undefined
  }
  if (entries.length === 0) {
    fail(path, 'must name where the secret comes from: {env: NAME}, {file: PATH, field: a.b}, {command: [argv]} or {value: SECRET}')
    return undefined
  }
  const sources: SecretSource[] = []
  for (const [i, entry] of entries.entries()) {
    const at = Array.isArray(value) ? [...path, i] : path
    const source = parseSecretSource(entry, at, fail, trust)
    if (source) sources.push(source)
  }
  return sources.length === entries.length ? sources : undefined
}

function parseSecretSource(value: unknown, path: PathSegment[], fail: ReportIssue, trust: GatewayTrust): SecretSource | undefined {
  const kinds = isRecord(value) ? ['env', 'file', 'command', 'value'].filter((key) => key in value) : []
  if (!isRecord(value) || kinds.length !== 1) {
    fail(path, 'must be one of {env: NAME}, {file: PATH, field: a.b}, {command: [argv], ttl_seconds: N} or {value: SECRET}')
    return undefined
  }
  const [kind] = kinds
  const allowed: Record<string, string[]> = {env: ['env'], file: ['file', 'field'], command: ['command', 'ttl_seconds'], value: ['value']}
  unknownKeys(value, path, allowed[kind!]!, fail)
  if ((kind === 'command' || kind === 'value') && !trust.runtimeConfig) {
    fail([...path, kind], `is only allowed in the runtime config (config.yaml): a plugin cannot make cleanroom run a command or carry a secret`)
    return undefined
  }
  switch (kind) {
    case 'env': {
      if (typeof value.env === 'string' && isEnvName(value.env)) return {env: value.env}
      fail([...path, 'env'], 'must be an environment variable name')
      return undefined
    }
    case 'file': {
      const problem = typeof value.file === 'string' ? (textProblem(value.file, AGENT_SPEC_LIMITS.maxPath) ?? validateCredentialSource(value.file)) : 'must be a host path (~/… or absolute)'
      if (problem) fail([...path, 'file'], problem)
      if (value.field !== undefined && !isJsonPath(value.field)) fail([...path, 'field'], 'must be a JSON path such as tokens.access_token')
      if (problem || (value.field !== undefined && typeof value.field !== 'string')) return undefined
      return {file: (value.file as string).trim(), ...(typeof value.field === 'string' && {field: value.field})}
    }
    case 'command': {
      const argv = value.command
      if (!Array.isArray(argv) || argv.length === 0 || !argv.every((arg) => typeof arg === 'string' && arg !== '')) {
        fail([...path, 'command'], 'must be a non-empty list of strings: the program and its arguments, e.g. [gh, auth, token]')
        return undefined
      }
      const problem = stringsProblem(argv, true)
      if (problem) {
        fail([...path, 'command'], problem)
        return undefined
      }
      const ttl = value.ttl_seconds ?? DEFAULT_COMMAND_TTL_SECONDS
      if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 1 || ttl > 86_400) {
        fail([...path, 'ttl_seconds'], 'must be a whole number of seconds from 1 to 86400')
        return undefined
      }
      return {command: argv as string[], ttl_seconds: ttl}
    }
    default: {
      if (typeof value.value === 'string' && value.value.trim() !== '' && textProblem(value.value) === undefined && !/[\r\n]/.test(value.value)) return {value: value.value.trim()}
      fail([...path, 'value'], 'must be the secret, on one line')
      return undefined
    }
  }
}

function parseLogin(value: unknown, path: PathSegment[], fail: ReportIssue): LoginSpec | undefined {
  if (!isRecord(value)) {
    fail(path, 'must be a mapping with name, file, tokens, token_endpoints, api_hosts and login_command')
    return undefined
  }
  let problems = 0
  const report: ReportIssue = (at, message, where) => {
    problems++
    fail(at, message, where)
  }
  unknownKeys(value, path, LOGIN_KEYS, report)
  const field = (key: string) => [...path, key]
  if (!isName(value.name)) report(field('name'), 'must be a login name (lower-case letters, digits and -, starting with a letter; at most 64)')
  const fileProblem =
    typeof value.file !== 'string'
      ? 'is required: the auth file, ~/…'
      : !value.file.trim().startsWith('~/')
        ? "must be ~/…: the same place in your home and the sandbox's"
        : (textProblem(value.file, AGENT_SPEC_LIMITS.maxPath) ?? validateCredentialSource(value.file) ?? validateCredentialTarget(value.file))
  if (fileProblem) report(field('file'), fileProblem)
  const tokens = listOf(value.tokens, field('tokens'), report, (entry, at) => parseToken(entry, at, report))
  if (tokens.length > 0 && !tokens.some((token) => token?.kind === 'access')) report(field('tokens'), 'must include the access token (kind: access)')
  let expires: LoginSpec['expires']
  if (value.expires !== undefined) {
    const {path: expiresPath, unit} = isRecord(value.expires) ? value.expires : {path: undefined, unit: undefined}
    if (!isJsonPath(expiresPath) || (unit !== 's' && unit !== 'ms')) report(field('expires'), 'must be {path: a.b, unit: s | ms}')
    else expires = {path: expiresPath, unit}
  }
  if (value.refreshed_at !== undefined && !isJsonPath(value.refreshed_at)) report(field('refreshed_at'), 'must be a JSON path')
  if (value.omit !== undefined && (!Array.isArray(value.omit) || value.omit.length > GATEWAY_LIMITS.maxList || !value.omit.every((path) => isJsonPath(path)))) report(field('omit'), `must be a list of at most ${GATEWAY_LIMITS.maxList} JSON paths`)
  const endpoints = listOf(value.token_endpoints, field('token_endpoints'), report, (entry, at) => {
    const host = isRecord(entry) ? parseHost(entry.host, entry.port, [...at, 'host'], report) : undefined
    if (!isRecord(entry) || typeof entry.path !== 'string' || !entry.path.startsWith('/') || textProblem(entry.path, GATEWAY_LIMITS.maxUrl) !== undefined) report(at, 'must be {host, path: /…, port?}')
    return host && isRecord(entry) && typeof entry.path === 'string' ? {...host, path: entry.path} : undefined
  })
  const apiHosts = listOf(value.api_hosts, field('api_hosts'), report, (entry, at) => parseHostEntry(entry, at, report))
  const commandProblem = typeof value.login_command !== 'string' || value.login_command.trim() === '' ? 'must say what to run on the host to log in again, e.g. codex login' : textProblem(value.login_command, 1024)
  if (commandProblem) report(field('login_command'), commandProblem)
  if (problems > 0) return undefined
  return {
    name: value.name as string,
    file: (value.file as string).trim(),
    tokens: tokens as TokenField[],
    ...(expires && {expires}),
    ...(typeof value.refreshed_at === 'string' && {refreshed_at: value.refreshed_at}),
    ...(Array.isArray(value.omit) && {omit: value.omit as string[]}),
    token_endpoints: endpoints as LoginSpec['token_endpoints'],
    api_hosts: apiHosts as HostPort[],
    login_command: (value.login_command as string).trim(),
  }
}

function parseToken(value: unknown, path: PathSegment[], fail: ReportIssue): TokenField | undefined {
  if (!isRecord(value) || !isJsonPath(value.path) || !(TOKEN_KINDS as readonly unknown[]).includes(value.kind)) {
    fail(path, `must be {path: a.b, kind: ${TOKEN_KINDS.join(' | ')}, format?}`)
    return undefined
  }
  if (value.format !== undefined && (typeof value.format !== 'string' || value.format.length > GATEWAY_LIMITS.maxShort || !PHANTOM_FORMAT.test(value.format))) {
    fail([...path, 'format'], 'must hold {} once, with letters, digits, ".", "_" or "-" around it')
    return undefined
  }
  return {path: value.path, kind: value.kind as TokenKind, ...(typeof value.format === 'string' && {format: value.format})}
}

/** `host`, `host:port` or `{host, port}`. */
function parseHostEntry(entry: unknown, path: PathSegment[], fail: ReportIssue): HostPort | undefined {
  if (typeof entry === 'string') return parseHostPort(entry, path, fail)
  return isRecord(entry) ? parseHost(entry.host, entry.port, path, fail) : parseHost(undefined, undefined, path, fail)
}

function parseHostPort(text: string, path: PathSegment[], fail: ReportIssue): HostPort | undefined {
  const match = /^(.*?)(?::(\d+))?$/.exec(text.trim())
  return parseHost(match?.[1], match?.[2] === undefined ? undefined : Number(match[2]), path, fail)
}

function parseHost(host: unknown, port: unknown, path: PathSegment[], fail: ReportIssue): HostPort | undefined {
  if (typeof host !== 'string') {
    fail(path, 'must be a host name, host:port')
    return undefined
  }
  try {
    const normalized = normalizeHostPattern(host)
    const kind = hostKind(normalized)
    if (kind !== 'name' && kind !== 'ip') throw new HostPatternError('must be one host name or address, not a wildcard or a CIDR')
    if (port !== undefined && !isPort(port)) throw new HostPatternError(`${String(port)} is not a port (1-65535)`)
    return {host: normalized, port: (port as number | undefined) ?? 443}
  } catch (error) {
    if (!(error instanceof HostPatternError)) throw error
    fail(path, error.message)
    return undefined
  }
}

function stringMap(value: unknown, path: PathSegment[], fail: ReportIssue): Record<string, string> | undefined {
  if (!isRecord(value)) {
    fail(path, 'must be a mapping of variable names to strings')
    return undefined
  }
  const names = Object.keys(value)
  if (names.length > GATEWAY_LIMITS.maxStrings) {
    fail(path, `has ${names.length} variables: at most ${GATEWAY_LIMITS.maxStrings} are allowed`)
    return undefined
  }
  const map: Record<string, string> = {}
  for (const [name, entry] of Object.entries(value)) {
    const problem = typeof entry === 'string' ? textProblem(entry) : 'must be a string (quote numbers and booleans)'
    if (!isEnvName(name)) fail([...path, name], 'is not a valid environment variable name', 'key')
    else if (problem) fail([...path, name], problem)
    else map[name] = entry as string
  }
  return map
}
