import {CREDENTIAL_MODES, type CredentialMode} from '../credentials/spec.js'
import {type GatewayTrust, parseGateway} from '../credentials/validate.js'
import {HostPatternError, normalizeHostPattern} from '../policy/host.js'
import {isPort, notAPort, sortedPorts} from '../policy/rules.js'
import {isEnvName} from '../util/env-name.js'
import type {PathSegment} from '../util/yaml-file.js'
import {isRecord} from '../util/record.js'
import {DIST_TAG, EXACT_VERSION} from './cache/layout.js'
import {normalizeCredentialTarget, validateCredentialSource} from './credential-paths.js'
import {defaultTest} from './script.js'
import {
  AGENT_NAME_PATTERN,
  AGENT_SPEC_KEYS,
  AGENT_SPEC_LIMITS,
  type AgentSpec,
  type AgentSpecInput,
  CREDENTIAL_TRANSFORMS,
  type CredentialMapping,
  type CredentialTransform,
  type NetworkNeed,
  NPM_PACKAGE_PATTERN,
  type ReportIssue,
  RESERVED_AGENT_NAMES,
} from './spec.js'

const CREDENTIAL_KEYS = ['source', 'target', 'transform', 'secret', 'omit']
const NETWORK_KEYS = ['host', 'ports', 'reason']

/** NUL and the control characters other than tab and line breaks: nothing an agent's fields need, and a way to hide text on a terminal. */
const CONTROL_CHARACTER = /[\0-\x08\v\f\x0E-\x1F\x7F-\x9F]/

/** Why `text` cannot be a text field of at most `max` characters, or undefined. */
export function textProblem(text: string, max: number = AGENT_SPEC_LIMITS.maxText): string | undefined {
  if (text.length > max) return `is ${text.length} characters long: at most ${max} are allowed`
  const control = CONTROL_CHARACTER.exec(text)
  if (control) return `contains the control character U+${control[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}: remove it`
  return undefined
}

/** Why `name` cannot name an agent, or undefined when it can. */
export function agentNameProblem(name: string): string | undefined {
  if (name.length > 64) return `is ${name.length} characters long: an agent name has at most 64`
  if (!AGENT_NAME_PATTERN.test(name)) return `"${name}" is not a valid agent name (lower-case letters, digits and -, starting with a letter)`
  if (RESERVED_AGENT_NAMES.includes(name)) return `"${name}" is reserved by the cleanroom agent command`
  return undefined
}

/**
 * Checks one source's declaration of an agent (a plugin's `cleanroom.agent`
 * block or one entry of the runtime config's `agents:` map) and returns the
 * fields it sets. Every problem goes to `report`; the result is undefined when
 * there was any, so a half-valid spec is never used.
 */
export function parseAgentInput(value: unknown, path: PathSegment[], report: ReportIssue, trust: GatewayTrust = {runtimeConfig: false}): AgentSpecInput | undefined {
  let problems = 0
  const fail: ReportIssue = (p, message, at) => {
    problems++
    report(p, message, at)
  }

  if (!isRecord(value)) {
    fail(path, 'must be a mapping of agent fields')
    return undefined
  }

  const keys = Object.keys(value)
  if (keys.length > AGENT_SPEC_KEYS.length * 4) {
    fail(path, `has ${keys.length} fields: an agent has at most these: ${AGENT_SPEC_KEYS.join(', ')}`)
    return undefined
  }
  const input: AgentSpecInput = {}
  for (const [key, field] of Object.entries(value)) {
    const at = [...path, key]
    switch (key) {
      case 'name': {
        // The name is checked by the caller, which knows where it comes from.
        break
      }
      case 'description':
      case 'command':
      case 'test':
      case 'install': {
        const problem = typeof field === 'string' ? textProblem(field) : 'must be a string'
        if (problem) {
          fail(at, problem)
        } else if ((field as string).trim() !== '') {
          input[key] = (field as string).trim()
        }
        break
      }
      case 'package': {
        if (typeof field !== 'string' || field.length > AGENT_SPEC_LIMITS.maxPackage || !NPM_PACKAGE_PATTERN.test(field.trim())) {
          fail(at, 'must be an npm package name without a version, e.g. @google/gemini-cli')
        } else {
          input.package = field.trim()
        }
        break
      }
      case 'version': {
        const version = typeof field === 'number' ? undefined : typeof field === 'string' ? field.trim() : undefined
        if (version === undefined || !(EXACT_VERSION.test(version) || DIST_TAG.test(version))) {
          fail(at, 'must be an exact version of the package (as a string: "0.61.0") or a dist-tag (latest, next)')
        } else {
          input.version = version
        }
        break
      }
      case 'credentials': {
        if (typeof field === 'string') {
          const mode = parseCredentialMode(field, at, fail)
          if (mode) input.credential_mode = mode
          break
        }
        const credentials = parseCredentials(field, at, fail)
        if (credentials) input.credentials = credentials
        break
      }
      case 'gateway': {
        const gateway = parseGateway(field, at, fail, trust)
        if (gateway) input.gateway = gateway
        break
      }
      case 'network': {
        const network = parseNetwork(field, at, fail)
        if (network) input.network = network
        break
      }
      case 'env': {
        const env = parseEnv(field, at, fail)
        if (env) input.env = env
        break
      }
      default: {
        fail(at, `unknown key (expected one of: ${AGENT_SPEC_KEYS.join(', ')})`, 'key')
      }
    }
  }

  return problems === 0 ? input : undefined
}

/** `credentials: gateway | copy | none` chooses the mode and keeps the files an earlier source listed. */
function parseCredentialMode(value: string, path: PathSegment[], fail: ReportIssue): CredentialMode | undefined {
  if ((CREDENTIAL_MODES as readonly string[]).includes(value.trim())) return value.trim() as CredentialMode
  fail(path, `must be a list of {source, target} mappings, or one of: ${CREDENTIAL_MODES.join(', ')}`)
  return undefined
}

function parseCredentials(value: unknown, path: PathSegment[], fail: ReportIssue): CredentialMapping[] | undefined {
  if (!Array.isArray(value)) {
    fail(path, `must be a list of {source, target} mappings, or one of: ${CREDENTIAL_MODES.join(', ')}`)
    return undefined
  }
  if (!withinLimit(value, AGENT_SPEC_LIMITS.maxCredentials, path, fail)) return undefined
  const mappings: CredentialMapping[] = []
  for (const [i, entry] of value.entries()) {
    const at = [...path, i]
    if (!isRecord(entry)) {
      fail(at, 'must be a mapping with source and target')
      continue
    }
    for (const key of Object.keys(entry)) {
      if (!CREDENTIAL_KEYS.includes(key)) fail([...at, key], `unknown key (expected one of: ${CREDENTIAL_KEYS.join(', ')})`, 'key')
    }
    const {source, target, transform, secret, omit} = entry
    if (typeof source !== 'string' || source.trim() === '') {
      fail([...at, 'source'], 'is required: the host path to copy (e.g. ~/.codex/auth.json)')
      continue
    }
    const pathProblem = textProblem(source, AGENT_SPEC_LIMITS.maxPath) ?? (typeof target === 'string' ? textProblem(target, AGENT_SPEC_LIMITS.maxPath) : undefined)
    if (pathProblem) {
      fail([...at, textProblem(source, AGENT_SPEC_LIMITS.maxPath) ? 'source' : 'target'], pathProblem)
      continue
    }
    const sourceProblem = validateCredentialSource(source.trim())
    if (sourceProblem) fail([...at, 'source'], sourceProblem)
    let mappedTarget = source.trim()
    if (target !== undefined) {
      if (typeof target !== 'string') {
        fail([...at, 'target'], 'must be a string')
        continue
      }
      if (target.trim() !== '') mappedTarget = target.trim()
    }
    try {
      normalizeCredentialTarget(mappedTarget)
    } catch (error) {
      fail([...at, 'target'], error instanceof Error ? error.message : String(error))
    }
    const mapping: CredentialMapping = {source: source.trim(), target: mappedTarget}
    if (transform !== undefined) {
      if (typeof transform === 'string' && (CREDENTIAL_TRANSFORMS as readonly string[]).includes(transform)) {
        mapping.transform = transform as CredentialTransform
      } else {
        fail([...at, 'transform'], `must be one of: ${CREDENTIAL_TRANSFORMS.join(', ')}`)
      }
    }
    if (secret !== undefined) {
      if (typeof secret === 'boolean') mapping.secret = secret
      else fail([...at, 'secret'], 'must be true or false')
    }
    if (omit !== undefined) {
      if (Array.isArray(omit) && omit.every((key) => typeof key === 'string' && key !== '')) mapping.omit = omit as string[]
      else fail([...at, 'omit'], 'must be a list of top-level JSON keys')
    }
    mappings.push(mapping)
  }
  return mappings
}

function parseNetwork(value: unknown, path: PathSegment[], fail: ReportIssue): NetworkNeed[] | undefined {
  if (!Array.isArray(value)) {
    fail(path, 'must be a list of {host, ports, reason} entries')
    return undefined
  }
  if (!withinLimit(value, AGENT_SPEC_LIMITS.maxNetwork, path, fail)) return undefined
  const needs: NetworkNeed[] = []
  for (const [i, entry] of value.entries()) {
    const at = [...path, i]
    if (!isRecord(entry)) {
      fail(at, 'must be a mapping with host, ports and reason')
      continue
    }
    for (const key of Object.keys(entry)) {
      if (!NETWORK_KEYS.includes(key)) fail([...at, key], `unknown key (expected one of: ${NETWORK_KEYS.join(', ')})`, 'key')
    }
    let host: string | undefined
    if (typeof entry.host === 'string') {
      try {
        host = normalizeHostPattern(entry.host)
      } catch (error) {
        if (!(error instanceof HostPatternError)) throw error
        fail([...at, 'host'], error.message)
      }
    } else {
      fail([...at, 'host'], 'is required: the host name the agent must reach')
    }
    const ports = parsePorts(entry.ports, [...at, 'ports'], fail)
    const reasonProblem = entry.reason === undefined ? undefined : typeof entry.reason === 'string' ? textProblem(entry.reason, 1024) : 'must be a string'
    if (reasonProblem) fail([...at, 'reason'], reasonProblem)
    if (host === undefined || ports === undefined) continue
    const need: NetworkNeed = {host, ports}
    if (typeof entry.reason === 'string' && entry.reason.trim() !== '') need.reason = entry.reason.trim()
    needs.push(need)
  }
  return needs
}

function parsePorts(value: unknown, path: PathSegment[], fail: ReportIssue): number[] | undefined {
  if (!Array.isArray(value) || value.length === 0) {
    fail(path, 'must be a non-empty list of ports (1-65535)')
    return undefined
  }
  if (!withinLimit(value, AGENT_SPEC_LIMITS.maxPorts, path, fail)) return undefined
  const ports: number[] = []
  for (const [i, port] of value.entries()) {
    if (isPort(port)) ports.push(port)
    else fail([...path, i], notAPort(port))
  }
  return sortedPorts(ports)
}

function parseEnv(value: unknown, path: PathSegment[], fail: ReportIssue): Record<string, string> | undefined {
  if (!isRecord(value)) {
    fail(path, 'must be a mapping of variable names to string values')
    return undefined
  }
  const names = Object.keys(value)
  if (names.length > AGENT_SPEC_LIMITS.maxEnv) {
    fail(path, `has ${names.length} variables: at most ${AGENT_SPEC_LIMITS.maxEnv} are allowed`)
    return undefined
  }
  const env: Record<string, string> = {}
  for (const [name, envValue] of Object.entries(value)) {
    if (name.length > 256 || !isEnvName(name)) fail([...path, name.slice(0, 256)], 'is not a valid environment variable name', 'key')
    else if (typeof envValue !== 'string') fail([...path, name], 'must be a string (quote numbers and booleans)')
    else if (envValue.includes('\0')) fail([...path, name], 'must not contain NUL')
    else if (envValue.length > AGENT_SPEC_LIMITS.maxText) fail([...path, name], textProblem(envValue)!)
    else env[name] = envValue
  }
  return env
}

function withinLimit(value: readonly unknown[], max: number, path: PathSegment[], fail: ReportIssue): boolean {
  if (value.length <= max) return true
  fail(path, `has ${value.length} entries: at most ${max} are allowed`)
  return false
}

/**
 * Layers `override` on `base`: every field `override` sets replaces the base's,
 * lists and env included. One exception keeps a replaced list from silently
 * losing what it did: a credential mapping without a `transform` whose target an
 * earlier mapping rewrote (Codex's config.toml and its trust edit) keeps that
 * transform, unless it says `transform: none`.
 */
export function mergeAgentInputs(base: AgentSpecInput, override: AgentSpecInput): AgentSpecInput {
  const merged = {...base, ...override}
  if (base.credentials && override.credentials) merged.credentials = override.credentials.map((mapping) => keepTransform(mapping, base.credentials!))
  return merged
}

function keepTransform(mapping: CredentialMapping, earlier: readonly CredentialMapping[]): CredentialMapping {
  if (mapping.transform !== undefined) return mapping
  const target = normalizedTarget(mapping.target)
  if (target === undefined) return mapping
  const rewritten = earlier.find((previous) => previous.transform !== undefined && previous.transform !== 'none' && normalizedTarget(previous.target) === target)
  return rewritten ? {...mapping, transform: rewritten.transform} : mapping
}

function normalizedTarget(target: string): string | undefined {
  try {
    return normalizeCredentialTarget(target)
  } catch {
    return undefined
  }
}

/** Fills what no source set: command defaults to the name, test to a check of the command's first word. */
export function completeAgentSpec(name: string, input: AgentSpecInput): AgentSpec {
  const command = input.command ?? name
  const spec: AgentSpec = {
    name,
    command,
    test: input.test ?? defaultTest(command, input.package),
    credentials: input.credentials ?? [],
    network: input.network ?? [],
    env: input.env ?? {},
  }
  if (input.description !== undefined) spec.description = input.description
  if (input.install !== undefined) spec.install = input.install
  if (input.package !== undefined) spec.package = input.package
  if (input.version !== undefined) spec.version = input.version
  if (input.gateway !== undefined) spec.gateway = input.gateway
  if (input.credential_mode !== undefined) spec.credential_mode = input.credential_mode
  return spec
}
