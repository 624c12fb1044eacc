import {join} from 'node:path'

import type {AgentSpec, CredentialMapping} from '../agents/spec.js'
import type {CredentialSettings} from './settings.js'
import type {CredentialMode, LoginSpec, RouteSpec, SecretSource} from './spec.js'
import type {GrantedLogin, GrantedRoute, GrantRequest, GrantSummary, WireSecretSource} from './wire.js'

/** How one `cleanroom agent` run gives the agent its credentials. */
export interface CredentialPlan {
  mode: CredentialMode
  /** Files to copy into the sandbox: all of them in copy mode, those holding no secret in gateway mode. */
  copy: CredentialMapping[]
  /** What to ask the daemon's gateway for (gateway mode). */
  grant?: GrantRequest
  /** Said on stderr before the agent starts. */
  notices: string[]
}

export interface PlanOptions {
  settings: CredentialSettings
  /** The environment `cleanroom agent` runs in: where `env` secret sources are read. */
  env: NodeJS.ProcessEnv
  /** What `~` means in host paths. */
  hostHome: string
  /** The agent's gateway declaration comes from a built-in plugin or the runtime config (else only granted names are used). */
  trusted: boolean
}

/**
 * The credentials of an agent run. Gateway mode (the default for an agent
 * that declares a gateway) sends the daemon the agent's routes and logins
 * with the runtime config's changes; copy mode copies the files in, with a
 * warning every time; none gives nothing.
 */
export function planAgentCredentials(agent: AgentSpec, options: PlanOptions): CredentialPlan {
  const mode = agent.credential_mode ?? (agent.gateway ? 'gateway' : 'copy')
  if (mode === 'none') return {mode, copy: [], notices: []}
  if (mode === 'copy' || agent.gateway === undefined) {
    const secrets = agent.credentials.filter((mapping) => mapping.secret !== false)
    const notices = secrets.length > 0 ? [copyWarning(agent.name, secrets)] : []
    if (mode === 'gateway') notices.push(`${agent.name} declares no credential gateway: its credential files are copied in`)
    // Copy mode copies files whole, as the user chose: nothing is left out of them.
    return {mode: 'copy', copy: agent.credentials.map(({omit: _omit, ...mapping}) => mapping), notices}
  }
  const notices: string[] = []
  const granted = (kind: string, name: string) => {
    if (options.trusted || options.settings.grant.includes(name)) return true
    notices.push(`${agent.name}: ${kind} ${name} of an installed plugin is not used: add it to credentials.grant in config.yaml to allow it`)
    return false
  }
  const routes = agent.gateway.routes.filter((route) => granted('route', route.name)).map((route) => withOverride(route, options.settings.routes[route.name]))
  const logins = agent.gateway.logins.filter((login) => granted('login', login.name))
  return {
    mode,
    copy: agent.credentials.filter((mapping) => mapping.secret === false),
    grant: {routes: routes.map((route) => wireRoute(route, options)), logins: logins.map((login) => wireLogin(login, options.hostHome)), write_back: options.settings.write_back},
    notices,
  }
}

/**
 * The routes a repository's policy asks for (`sandbox.credentials`) that the
 * runtime config grants and defines; the others are named in `refused`.
 */
export function planRequestedCredentials(requested: readonly string[], options: Omit<PlanOptions, 'trusted'>): {grant?: GrantRequest; refused: string[]} {
  const refused: string[] = []
  const routes: GrantedRoute[] = []
  for (const name of requested) {
    const route = options.settings.routes[name]
    if (!options.settings.grant.includes(name) || !isComplete(route)) {
      refused.push(name)
      continue
    }
    routes.push(wireRoute(route, options))
  }
  return {...(routes.length > 0 && {grant: {routes, logins: [], write_back: options.settings.write_back}}), refused}
}

function withOverride(route: RouteSpec, override: Partial<RouteSpec> | undefined): RouteSpec {
  return override === undefined ? route : {...route, ...override, name: route.name}
}

function isComplete(route: Partial<RouteSpec> | undefined): route is RouteSpec {
  return route?.name !== undefined && route.upstream !== undefined && route.header !== undefined && route.format !== undefined && route.secret !== undefined && route.env !== undefined
}

function wireRoute(route: RouteSpec, options: Omit<PlanOptions, 'trusted'>): GrantedRoute {
  const secret = route.secret.flatMap((source) => wireSource(source, options))
  return {...route, secret}
}

function wireSource(source: SecretSource, options: Omit<PlanOptions, 'trusted'>): WireSecretSource[] {
  if ('env' in source) {
    const value = options.env[source.env]?.trim()
    return value ? [{provided: value, from: `${source.env} from your environment`}] : []
  }
  if ('value' in source) return [{provided: source.value, from: 'the runtime config'}]
  if ('file' in source) return [{file: expandHome(source.file, options.hostHome), ...(source.field !== undefined && {field: source.field})}]
  return [{command: source.command, ttl_seconds: source.ttl_seconds ?? 900}]
}

function wireLogin(login: LoginSpec, hostHome: string): GrantedLogin {
  return {...login, host_file: expandHome(login.file, hostHome)}
}

function expandHome(path: string, hostHome: string): string {
  if (path === '~') return hostHome
  return path.startsWith('~/') ? join(hostHome, path.slice(2)) : path
}

function copyWarning(agent: string, files: readonly CredentialMapping[]): string {
  const names = files.map((mapping) => mapping.source).join(', ')
  return `warning: ${agent} runs with credentials: copy: ${names} ${files.length === 1 ? 'is' : 'are'} copied into the sandbox, where anything that runs there can read ${files.length === 1 ? 'it' : 'them'}, and a token refreshed there may be rotated and log you out on the host (the gateway keeps them out: docs/credentials.md)`
}

/** What a run's grant gave the agent, as `cleanroom agent` says it on stderr. */
export function renderGrant(agent: string, summary: GrantSummary): string[] {
  const lines: string[] = []
  const used = summary.routes.filter((route) => route.source !== null)
  for (const route of used) {
    const where = route.intercepted.length > 0 ? `; TLS to ${route.intercepted.join(', ')} is intercepted with this sandbox's own CA` : ''
    lines.push(`${agent} gets ${route.name} through the credential gateway (${route.source}; upstream ${route.upstream}${where}): the sandbox holds a phantom token only`)
  }
  for (const login of summary.logins) {
    if (login.state === 'in use') lines.push(`${agent} uses your host login ${login.name} (${login.file}) through the credential gateway: the sandbox's copy holds phantom tokens; TLS to ${login.intercepted.join(', ')} is intercepted with this sandbox's own CA`)
  }
  if (used.length === 0 && !summary.logins.some((login) => login.state === 'in use')) {
    const unset = summary.routes.map((route) => route.name)
    const logins = summary.logins.map((login) => `run \`${login.login_command}\` on the host`)
    const ways = [...(unset.length > 0 ? [`provide a key for ${unset.join(' or ')} (docs/credentials.md)`] : []), ...logins]
    lines.push(`${agent}: no host credentials found${ways.length > 0 ? `: ${ways.join(', or ')}` : ''}; logging in inside the sandbox works too`)
  }
  return lines
}
