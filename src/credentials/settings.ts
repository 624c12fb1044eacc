import type {YamlFile} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import type {RouteSpec} from './spec.js'
import {ROUTE_NAME_PATTERN} from './spec.js'
import {parseRouteOverride} from './validate.js'

/** The runtime config's `credentials:` section: the user's grants (docs/credentials.md). */
export interface CredentialSettings {
  /** Refreshed OAuth tokens are written back to the host's auth file, so the host's own CLI stays logged in. */
  write_back: boolean
  /** Routes a repository policy (`sandbox.credentials`) or a third-party agent plugin may use. */
  grant: string[]
  /** Routes defined here, and changes to agents' routes of the same name (e.g. another upstream). */
  routes: Record<string, Partial<RouteSpec>>
}

export const DEFAULT_CREDENTIAL_SETTINGS: CredentialSettings = {write_back: true, grant: [], routes: {}}

const KEYS = ['write_back', 'grant', 'routes']

/** Reads `credentials:` strictly, reporting on `file`; what is left out keeps its default. */
export function parseCredentialSettings(file: YamlFile, value: unknown): CredentialSettings {
  const settings = structuredClone(DEFAULT_CREDENTIAL_SETTINGS)
  if (value === undefined || value === null) return settings
  if (!isRecord(value)) {
    file.report(['credentials'], 'must be a mapping with write_back, grant and routes')
    return settings
  }
  reportUnknownKeys(file, ['credentials'], value, KEYS)
  if (value.write_back !== undefined) {
    if (typeof value.write_back === 'boolean') settings.write_back = value.write_back
    else file.report(['credentials', 'write_back'], 'must be true or false')
  }
  if (value.grant !== undefined && value.grant !== null) {
    if (Array.isArray(value.grant) && value.grant.every((name) => typeof name === 'string' && ROUTE_NAME_PATTERN.test(name))) settings.grant = value.grant as string[]
    else file.report(['credentials', 'grant'], 'must be a list of route names')
  }
  if (value.routes !== undefined && value.routes !== null) {
    if (isRecord(value.routes)) {
      for (const [name, route] of Object.entries(value.routes)) {
        const parsed = parseRouteOverride(route, name, ['credentials', 'routes', name], (path, message, at) => file.report(path, message, at))
        if (parsed) settings.routes[name] = parsed
      }
    } else {
      file.report(['credentials', 'routes'], 'must be a mapping of route name to route fields')
    }
  }
  return settings
}
