import {agentNameProblem, parseAgentInput} from '../agents/validate.js'
import {parseCredentialSettings} from '../credentials/settings.js'
import {CleanroomError} from '../errors/index.js'
import {isEnvName} from '../util/env-name.js'
import {FILE_LIMITS} from '../util/yaml-bounds.js'
import {displayPath, YamlFile, type YamlLimits} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import {BACKEND_DESCRIPTORS} from '../sandbox/backends/descriptors.js'
import {configCommand} from './suggest.js'
import {
  BACKENDS,
  DEFAULT_RUNTIME_CONFIG,
  EGRESS_AUDIT_FAILURE_MODES,
  type EgressAuditFailureMode,
  type RegistrySettings,
  type RuntimeConfig,
} from './schema.js'
import {oneOf, parseSettings, type SettingsSchema} from './settings.js'

const TOP_KEYS = ['default_backend', 'backends', 'egress', 'agents', 'registries', 'credentials']
const EGRESS_KEYS = ['max_connections_per_sandbox', 'audit_failure']
const MAX_CONNECTIONS_PER_SANDBOX = 1_000_000
const REGISTRY_KEYS = ['username', 'password_env', 'token_env', 'insecure']
const REGISTRY_HOST = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::\d{1,5})?$/

/**
 * Validates a runtime config strictly: every unknown key and wrong type is
 * reported on `file` with its line and column. Fields left out keep their defaults.
 */
export function parseRuntimeConfig(file: YamlFile): RuntimeConfig {
  const config = structuredClone(DEFAULT_RUNTIME_CONFIG)
  const root = file.toJS()
  if (root === undefined || root === null) return config
  if (!isRecord(root)) {
    file.report([], 'the runtime config must be a mapping (e.g. default_backend: linux-ns)')
    return config
  }
  reportUnknownKeys(file, [], root, TOP_KEYS)

  if (root.default_backend !== undefined) {
    const backend = oneOf(file, ['default_backend'], root.default_backend, BACKENDS)
    if (backend) config.default_backend = backend
  }

  const {backends} = root
  if (backends !== undefined && backends !== null) {
    if (isRecord(backends)) {
      reportUnknownKeys(file, ['backends'], backends, BACKENDS)
      for (const name of BACKENDS) parseBackend(file, name, backends[name], BACKEND_DESCRIPTORS[name].settings, config.backends[name])
    } else {
      file.report(['backends'], 'must be a mapping of backend name to settings')
    }
  }

  parseEgress(file, root.egress, config)

  const {agents} = root
  if (agents !== undefined && agents !== null) {
    if (isRecord(agents)) {
      for (const [name, value] of Object.entries(agents)) {
        const nameProblem = agentNameProblem(name)
        if (nameProblem) {
          file.report(['agents', name], nameProblem, 'key')
          continue
        }
        if (isRecord(value) && value.name !== undefined && value.name !== name) {
          file.report(['agents', name, 'name'], `must be "${name}" (the key names the agent) or be left out`)
        }
        const input = parseAgentInput(value ?? {}, ['agents', name], (path, message, at) => file.report(path, message, at), {runtimeConfig: true})
        if (input) config.agents[name] = input
      }
    } else {
      file.report(['agents'], 'must be a mapping of agent name to agent fields')
    }
  }

  parseRegistries(file, root.registries, config)
  config.credentials = parseCredentialSettings(file, root.credentials)
  return config
}

function parseRegistries(file: YamlFile, value: unknown, config: RuntimeConfig): void {
  if (value === undefined || value === null) return
  if (!isRecord(value)) {
    file.report(['registries'], 'must be a mapping of registry host to settings')
    return
  }
  for (const [host, settings] of Object.entries(value)) {
    const path = ['registries', host]
    if (!REGISTRY_HOST.test(host)) {
      file.report(path, `"${host}" is not a registry host (lower-case host name or address, optional :port)`, 'key')
      continue
    }
    if (!isRecord(settings)) {
      file.report(path, 'must be a mapping of username, password_env, token_env, insecure')
      continue
    }
    reportUnknownKeys(file, path, settings, REGISTRY_KEYS)
    const parsed: RegistrySettings = {}
    if (settings.username !== undefined) {
      if (typeof settings.username === 'string' && settings.username !== '' && !/[:\0\r\n]/.test(settings.username)) parsed.username = settings.username
      else file.report([...path, 'username'], 'must be a non-empty name without ":"')
    }
    for (const key of ['password_env', 'token_env'] as const) {
      if (settings[key] === undefined) continue
      if (typeof settings[key] === 'string' && isEnvName(settings[key])) parsed[key] = settings[key]
      else file.report([...path, key], 'must name an environment variable (letters, digits, _), not hold the secret itself')
    }
    if (settings.insecure !== undefined) {
      if (typeof settings.insecure === 'boolean') parsed.insecure = settings.insecure
      else file.report([...path, 'insecure'], 'must be true or false')
    }
    if ((parsed.username === undefined) !== (parsed.password_env === undefined)) file.report(path, 'username and password_env go together', 'key')
    if (parsed.token_env !== undefined && parsed.username !== undefined) file.report([...path, 'token_env'], 'give either username and password_env, or token_env')
    config.registries[host] = parsed
  }
}

/** `backends.<name>`: the settings its backend declares (src/sandbox/backends/<name>/descriptor.ts). */
function parseBackend(file: YamlFile, name: string, value: unknown, schema: SettingsSchema, target: object): void {
  if (value === undefined || value === null) return
  const path = ['backends', name]
  if (!isRecord(value)) {
    file.report(path, 'must be a mapping of settings')
    return
  }
  reportUnknownKeys(file, path, value, Object.keys(schema))
  parseSettings(file, path, value, schema, target as Record<string, unknown>)
}

function parseEgress(file: YamlFile, value: unknown, config: RuntimeConfig): void {
  if (value === undefined || value === null) return
  if (!isRecord(value)) {
    file.report(['egress'], 'must be a mapping of settings')
    return
  }
  reportUnknownKeys(file, ['egress'], value, EGRESS_KEYS)
  if (value.audit_failure !== undefined) {
    const mode = oneOf(file, ['egress', 'audit_failure'], value.audit_failure, EGRESS_AUDIT_FAILURE_MODES)
    if (mode) config.egress.audit_failure = mode as EgressAuditFailureMode
  }
  const max = value.max_connections_per_sandbox
  if (max === undefined || max === null) return
  if (typeof max !== 'number' || !Number.isInteger(max) || max < 1 || max > MAX_CONNECTIONS_PER_SANDBOX) {
    file.report(['egress', 'max_connections_per_sandbox'], `must be a whole number from 1 to ${MAX_CONNECTIONS_PER_SANDBOX}`)
    return
  }
  config.egress.max_connections_per_sandbox = max
}

/** The limits a runtime config is parsed with (the same as a policy's). */
export const CONFIG_FILE_LIMITS: YamlLimits = {what: 'a runtime config', ...FILE_LIMITS}

/** Validates config text that came from `path`; throws config_invalid listing every problem. */
export function parseRuntimeConfigText(path: string, text: string): RuntimeConfig {
  return validated(path, new YamlFile(displayPath(path), text, CONFIG_FILE_LIMITS))
}

/** Like parseRuntimeConfigText, from the file's bytes (or its size, when it was too large to read). */
export function parseRuntimeConfigBytes(path: string, bytes: Uint8Array | number): RuntimeConfig {
  const display = displayPath(path)
  return validated(path, typeof bytes === 'number' ? YamlFile.tooLarge(display, bytes, CONFIG_FILE_LIMITS) : YamlFile.fromBytes(display, bytes, CONFIG_FILE_LIMITS))
}

function validated(path: string, file: YamlFile): RuntimeConfig {
  const config = file.ok ? parseRuntimeConfig(file) : DEFAULT_RUNTIME_CONFIG
  if (!file.ok) {
    throw new CleanroomError('config_invalid', `runtime config invalid:\n${file.issueLines().join('\n')}`, {
      details: {path, issues: file.issues.toSorted((a, b) => a.line - b.line || a.col - b.col)},
      suggestions: [`Fix the lines above in ${path}, then check with: ${configCommand('config validate', path)}`],
    })
  }
  return config
}
