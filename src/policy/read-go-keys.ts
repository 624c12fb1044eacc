import {posix} from 'node:path'

import {describeValue, formatPath, type PathSegment, readSection, type YamlFile} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import {ByteSizeError, parseByteSize} from './byte-size.js'
import {normalizeHostPattern, HostPatternError} from './host.js'
import {type RuleBudget, readRules} from './read-rules.js'
import {allowRule, isPort, mergeAllowRules} from './rules.js'
import {type ExposeHttpsRoute, type NetworkStage, type NetworkStageName, POLICY_LIMITS, type RepositoryCheckout, type Resources} from './schema.js'

/**
 * The keys of the Go cleanroom's later policies that are not about egress
 * rules or blocks: `sandbox.resources`, `sandbox.docker` (and its older
 * spelling `sandbox.services.docker`), `sandbox.run.before`, `repository`,
 * stage-local network blocks and `expose.https`. Each is checked as the Go
 * tool checks it, with its messages where it has them.
 */

export const DEFAULT_REPOSITORY_PATH = '/workspace'
/** The sandbox id host templates are expanded with to check them, as the Go tool does. */
const PREFLIGHT_SANDBOX_ID = '0'.repeat(26)

export function readResources(file: YamlFile, value: unknown): Resources | undefined {
  const section = readSection(file, ['sandbox', 'resources'], value, ['vcpus', 'memory', 'disk'])
  if (section === undefined) return undefined
  const resources: {vcpus?: number; memory_bytes?: number; disk_bytes?: number} = {}
  const {vcpus, memory, disk} = section
  if (vcpus !== undefined && vcpus !== null) {
    if (typeof vcpus !== 'number' || !Number.isSafeInteger(vcpus)) file.report(['sandbox', 'resources', 'vcpus'], `${describeValue(vcpus)} is not a whole number of vCPUs (e.g. 4)`)
    else if (vcpus <= 0) file.report(['sandbox', 'resources', 'vcpus'], 'must be positive')
    else resources.vcpus = vcpus
  }
  for (const [key, field, raw] of [['memory', 'memory_bytes', memory], ['disk', 'disk_bytes', disk]] as const) {
    if (raw === undefined || raw === null) continue
    try {
      const bytes = parseByteSize(raw)
      if (bytes <= 0) file.report(['sandbox', 'resources', key], 'must be positive')
      else resources[field] = bytes
    } catch (error) {
      if (!(error instanceof ByteSizeError)) throw error
      file.report(['sandbox', 'resources', key], error.message)
    }
  }
  return Object.keys(resources).length > 0 ? resources : undefined
}

/** `sandbox.docker.required` and the older `sandbox.services.docker.required`: one setting, written either way. */
export function readDocker(file: YamlFile, docker: unknown, servicesDocker: unknown): {required: boolean} | undefined {
  const current = readRequired(file, ['sandbox', 'docker'], docker)
  const older = readRequired(file, ['sandbox', 'services', 'docker'], servicesDocker)
  if (current !== undefined && older !== undefined && current !== older) {
    file.report(['sandbox', 'docker', 'required'], `is ${current} but sandbox.services.docker.required is ${older}: set it in one place`)
    return undefined
  }
  const required = current ?? older
  return required === undefined ? undefined : {required}
}

function readRequired(file: YamlFile, path: PathSegment[], value: unknown): boolean | undefined {
  const section = readSection(file, path, value, ['required'])
  if (section?.required === undefined || section.required === null) return undefined
  const required = goBool(section.required)
  if (required === undefined) file.report([...path, 'required'], 'must be true or false')
  return required
}

/** YAML 1.1 spellings the Go tool's YAML decoder still reads as booleans for a boolean field. */
const GO_BOOLEANS: Readonly<Record<string, boolean>> = {y: true, yes: true, on: true, true: true, n: false, no: false, off: false, false: false}

/** A boolean field's value as the Go tool reads it: true/false, or yes/no, on/off, y/n in any of their cases. */
function goBool(value: unknown): boolean | undefined {
  if (typeof value === 'boolean') return value
  if (typeof value !== 'string' || !/^(?:[a-z]+|[A-Z][a-z]*|[A-Z]+)$/.test(value)) return undefined
  return GO_BOOLEANS[value.toLowerCase()]
}

/** `sandbox.run.before`: a shell command run before every execution, as `sh -lc <command>`. */
export function readRunBefore(file: YamlFile, value: unknown): {before: string[]} | undefined {
  const section = readSection(file, ['sandbox', 'run'], value, ['before'])
  const before = section?.before
  if (before === undefined || before === null) return undefined
  if (typeof before !== 'string') {
    file.report(['sandbox', 'run', 'before'], 'command must be a string (it runs with sh -lc)')
    return undefined
  }
  if (before.trim() === '') {
    file.report(['sandbox', 'run', 'before'], 'must not be empty')
    return undefined
  }
  return {before: ['sh', '-lc', before.trim()]}
}

export interface RepositoryBlock {
  checkout?: RepositoryCheckout
  /** `repository.network`, the workspace stage's egress, still to be read. */
  network?: unknown
}

export function readRepository(file: YamlFile, value: unknown): RepositoryBlock {
  const section = readSection(file, ['repository'], value, ['enabled', 'mode', 'remote', 'path', 'submodules', 'network'])
  if (section === undefined) return {}
  const flag = (key: 'enabled' | 'submodules', fallback: boolean): boolean => {
    const field = section[key]
    if (field === undefined || field === null) return fallback
    const flag = goBool(field)
    if (flag !== undefined) return flag
    file.report(['repository', key], 'must be true or false')
    return fallback
  }
  const word = (key: 'mode' | 'remote' | 'path'): string => {
    const field = section[key]
    if (field === undefined || field === null) return ''
    if (typeof field === 'string') return field.trim()
    file.report(['repository', key], 'must be a string')
    return ''
  }
  const enabled = flag('enabled', true)
  const submodules = flag('submodules', false)
  const mode = word('mode').toLowerCase()
  if (mode !== '' && mode !== 'current-repo' && mode !== 'none') file.report(['repository', 'mode'], `unsupported repository.mode ${describeValue(section.mode)} (expected current-repo or none)`)
  const remote = word('remote') || 'origin'
  if (/[\s\0]/.test(remote)) file.report(['repository', 'remote'], `${JSON.stringify(remote)} is not a git remote name`)
  let path = word('path') || DEFAULT_REPOSITORY_PATH
  if (!path.startsWith('/')) file.report(['repository', 'path'], `repository.path ${describeValue(section.path)} must be absolute`)
  path = posix.normalize(path).replace(/(.)\/$/, '$1')
  const checkout: RepositoryCheckout = !enabled || mode === 'none' ? {enabled: false} : {enabled: true, mode: 'current-repo', remote, path, submodules}
  return {checkout, ...(section.network !== undefined && {network: section.network})}
}

/**
 * The stage-local egress blocks: `repository.network` (the workspace stage)
 * and `sandbox.network.{dependencies,services,execution}`. A block that is
 * present, even `{}`, scopes its stage; absent (or null) ones do not.
 */
export function readNetworkStages(file: YamlFile, network: Record<string, unknown> | undefined, repositoryNetwork: unknown, budget: RuleBudget): Partial<Record<NetworkStageName, NetworkStage>> | undefined {
  const sources: [NetworkStageName, PathSegment[], unknown][] = [
    ['workspace', ['repository', 'network'], repositoryNetwork],
    ['dependencies', ['sandbox', 'network', 'dependencies'], network?.dependencies],
    ['services', ['sandbox', 'network', 'services'], network?.services],
    ['execution', ['sandbox', 'network', 'execution'], network?.execution],
  ]
  const stages: Partial<Record<NetworkStageName, NetworkStage>> = {}
  for (const [stage, path, value] of sources) {
    const section = readSection(file, path, value, ['allow'])
    if (section === undefined) continue
    const rules = readRules(file, 'allow', [...path, 'allow'], section.allow, budget)
    stages[stage] = {allow: mergeAllowRules(rules.map((rule) => allowRule(rule.host, rule.ports ?? [], rule.reason)))}
  }
  return Object.keys(stages).length > 0 ? stages : undefined
}

export function readExpose(file: YamlFile, value: unknown): {https: {base?: string; routes: ExposeHttpsRoute[]}} | undefined {
  const expose = readSection(file, ['expose'], value, ['https'])
  const https = readSection(file, ['expose', 'https'], expose?.https, ['base', 'routes'])
  if (https === undefined) return undefined
  const path = ['expose', 'https']
  let base = ''
  if (https.base !== undefined && https.base !== null) {
    if (typeof https.base === 'string') base = https.base.trim().toLowerCase()
    else file.report([...path, 'base'], 'must be a string: a host name template (e.g. {sandbox_id}.cleanroom.localhost)')
  }
  const routes = https.routes
  if (base === '' && (routes === undefined || routes === null || (Array.isArray(routes) && routes.length === 0))) return undefined
  if (!Array.isArray(routes) || routes.length === 0) {
    file.report([...path, 'routes'], Array.isArray(routes) || routes === undefined || routes === null ? 'must include at least one route' : 'must be a list of {port, hosts}')
    return undefined
  }
  if (routes.length > POLICY_LIMITS.maxRoutes) {
    file.report([...path, 'routes'], `has ${routes.length} routes: at most ${POLICY_LIMITS.maxRoutes} are allowed`)
    return undefined
  }
  const expandedBase = base === '' ? '' : expandTemplate(base, '')
  if (base !== '' && expandedBase === '') file.report([...path, 'base'], 'expanded to an empty host')
  const declaredAt = new Map<string, string>()
  const compiled: ExposeHttpsRoute[] = []
  for (const [i, route] of routes.entries()) {
    const at: PathSegment[] = [...path, 'routes', i]
    if (!isRecord(route)) {
      file.report(at, 'must be a mapping with port and hosts')
      continue
    }
    reportUnknownKeys(file, at, route, ['port', 'hosts'])
    if (!isPort(route.port)) file.report([...at, 'port'], 'must be in range 1-65535')
    const hosts = readRouteHosts(file, [...at, 'hosts'], route.hosts, expandedBase, declaredAt)
    if (isPort(route.port) && hosts !== undefined) compiled.push({port: route.port, hosts})
  }
  return {https: {...(base !== '' && {base}), routes: compiled}}
}

function readRouteHosts(file: YamlFile, path: PathSegment[], value: unknown, base: string, declaredAt: Map<string, string>): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    file.report(path, Array.isArray(value) || value === undefined || value === null ? 'must include at least one host' : 'must be a list of host names')
    return undefined
  }
  if (value.length > POLICY_LIMITS.maxRouteHosts) {
    file.report(path, `has ${value.length} hosts: at most ${POLICY_LIMITS.maxRouteHosts} are allowed`)
    return undefined
  }
  const hosts: string[] = []
  const inRoute = new Set<string>()
  for (const [j, entry] of value.entries()) {
    const at = [...path, j]
    const host = typeof entry === 'string' ? entry.trim().toLowerCase() : undefined
    if (host === undefined) {
      file.report(at, 'must be a string: a host name template')
      continue
    }
    if (host === '') {
      file.report(at, 'cannot be empty')
      continue
    }
    if (host.includes('{base}') && base === '') {
      file.report(at, 'uses {base} but expose.https.base is empty')
      continue
    }
    const expanded = expandTemplate(host, base)
    const problem = routeNameProblem(expanded)
    if (problem) {
      file.report(at, `is invalid: ${problem}`)
      continue
    }
    if (inRoute.has(expanded)) continue
    const previous = declaredAt.get(expanded)
    if (previous) {
      file.report(at, `duplicates configured host ${JSON.stringify(expanded)} already declared at ${previous}`)
      continue
    }
    inRoute.add(expanded)
    declaredAt.set(expanded, formatPath(at))
    hosts.push(host)
  }
  return hosts.length > 0 ? hosts : undefined
}

function expandTemplate(value: string, base: string): string {
  return value.replaceAll('{sandbox_id}', PREFLIGHT_SANDBOX_ID).replaceAll('{container_id}', PREFLIGHT_SANDBOX_ID).replaceAll('{base}', base).trim().toLowerCase()
}

/** Why an expanded route host cannot name an HTTPS route: it must be a plain DNS name. */
function routeNameProblem(host: string): string | undefined {
  if (host.includes('*') || host.includes('{') || host.includes('}')) return `${JSON.stringify(host)} is not a host name (templates are {sandbox_id}, {container_id} and {base})`
  try {
    const normalized = normalizeHostPattern(host)
    if (normalized !== host) return `${JSON.stringify(host)} is not a plain lower-case host name`
    return /^[\d.]+$|:/.test(host) ? `${JSON.stringify(host)} is an address, not a host name` : undefined
  } catch (error) {
    if (error instanceof HostPatternError) return error.message
    throw error
  }
}
