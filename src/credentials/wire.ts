import {badRequest} from '../daemon/http.js'
import {isRecord} from '../util/record.js'
import type {LoginSpec, RouteSpec} from './spec.js'
import {parseGateway} from './validate.js'

/**
 * A secret source as the daemon gets it: the CLI resolves the sources only it
 * can read (its environment, the runtime config's values) into `provided`, and
 * expands `~` in host paths; files and commands are read by the daemon when used.
 */
export type WireSecretSource =
  | {provided: string; from: string}
  | {file: string; field?: string}
  | {command: string[]; ttl_seconds: number}

export type GrantedRoute = Omit<RouteSpec, 'secret'> & {secret: WireSecretSource[]}

/** A login with its auth file as a host path. */
export type GrantedLogin = LoginSpec & {host_file: string}

/** `POST /v1/sandboxes/{id}/credentials` (docs/api.md#credentials). */
export interface GrantRequest {
  routes: GrantedRoute[]
  logins: GrantedLogin[]
  /** Refreshed tokens are written back to the host's auth files. */
  write_back: boolean
}

/** What a sandbox got, as the daemon answers a grant and `cleanroom agent` prints it. */
export interface GrantSummary {
  routes: {name: string; upstream: string; url: string; source: string | null; intercepted: string[]}[]
  logins: {name: string; file: string; state: 'in use' | 'no host login' | 'not used: an API key route is in use'; login_command: string; intercepted: string[]}[]
  /** Arguments to put before the agent's own (routes' `args`). */
  args: string[]
  /** Names of the variables the sandbox's processes get. */
  env: string[]
}

/** Checks a grant request from a client: every field, with the same rules as a runtime config. */
export function parseGrantRequest(body: Record<string, unknown>): GrantRequest {
  const problems: string[] = []
  const report = (path: (number | string)[], message: string) => problems.push(`${path.join('.')}: ${message}`)
  const routesIn = Array.isArray(body.routes) ? body.routes : []
  const loginsIn = Array.isArray(body.logins) ? body.logins : []
  const secrets = routesIn.map((route) => (isRecord(route) ? route.secret : undefined))
  // The route's own shape is checked as a runtime config's; its sources in their wire form, here.
  const stripped = routesIn.map((route) => (isRecord(route) ? {...route, secret: {env: 'WIRE'}} : route))
  const gateway = parseGateway({routes: stripped, logins: loginsIn.map((login) => (isRecord(login) ? withoutKey(login, 'host_file') : login))}, ['grant'], report, {runtimeConfig: true})
  const routes: GrantedRoute[] = []
  for (const [i, route] of (gateway?.routes ?? []).entries()) routes.push({...route, secret: wireSources(secrets[i], i, report)})
  const logins: GrantedLogin[] = (gateway?.logins ?? []).map((login, i) => {
    const hostFile = isRecord(loginsIn[i]) ? loginsIn[i].host_file : undefined
    if (typeof hostFile !== 'string' || !hostFile.startsWith('/') || hostFile.includes('\0')) report(['grant', 'logins', i, 'host_file'], 'must be an absolute host path')
    return {...login, host_file: hostFile as string}
  })
  if (body.write_back !== undefined && typeof body.write_back !== 'boolean') report(['grant', 'write_back'], 'must be true or false')
  if (!Array.isArray(body.routes) || !Array.isArray(body.logins)) report(['grant'], 'must have routes and logins lists')
  if (problems.length > 0) throw badRequest(`invalid credential grant: ${problems.join('; ')}`)
  return {routes, logins, write_back: body.write_back !== false}
}

function wireSources(value: unknown, index: number, report: (path: (number | string)[], message: string) => void): WireSecretSource[] {
  const sources: WireSecretSource[] = []
  for (const [j, source] of (Array.isArray(value) ? value : []).entries()) {
    const at = ['grant', 'routes', index, 'secret', j]
    if (isRecord(source) && typeof source.provided === 'string' && typeof source.from === 'string' && source.provided !== '' && !/[\r\n\0]/.test(source.provided)) {
      sources.push({provided: source.provided, from: source.from})
    } else if (isRecord(source) && typeof source.file === 'string' && source.file.startsWith('/') && (source.field === undefined || typeof source.field === 'string')) {
      sources.push({file: source.file, ...(typeof source.field === 'string' && {field: source.field})})
    } else if (isRecord(source) && Array.isArray(source.command) && source.command.length > 0 && source.command.every((arg) => typeof arg === 'string') && typeof source.ttl_seconds === 'number') {
      sources.push({command: source.command as string[], ttl_seconds: source.ttl_seconds})
    } else {
      report(at, 'must be {provided, from}, {file: /abs, field?} or {command, ttl_seconds}')
    }
  }
  return sources
}

function withoutKey(record: Record<string, unknown>, key: string): Record<string, unknown> {
  const {[key]: _dropped, ...rest} = record
  return rest
}
