import {readFile, rename, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {formatPhantom, phantomSecret} from './phantom.js'
import type {TokenKind} from './spec.js'
import type {GrantedLogin, GrantedRoute} from './wire.js'

/** Real tokens of one login, as the gateway keeps them. */
export interface TokenSet {
  access?: string
  refresh?: string
  id?: string
  /** When the access token expires (epoch ms), when known. */
  expires_at?: number
}

export interface RouteState {
  spec: GrantedRoute
  /** The random part of the route's phantom. */
  secret: string
  /** Whether the sandbox is pointed at it (its variables set): it had a secret when granted. */
  active: boolean
}

export interface LoginState {
  spec: GrantedLogin
  /** The random part of each token's phantom. */
  secrets: Record<TokenKind, string>
  /** Tokens of a login made inside the sandbox (its own lineage, not the host's). */
  own?: TokenSet
  /** Other tokens a token endpoint gave the sandbox (an exchanged key), by the random part of their phantoms. */
  extras?: Record<string, string>
  /** Whether the sandbox got the host login's auth file. */
  host: boolean
  /**
   * Whether TLS to its hosts is intercepted: when the host login is in use, or
   * when nothing stands in for it (a login made inside the sandbox is then
   * captured); not when an API key route replaces it.
   */
  intercept: boolean
}

/**
 * What a sandbox's gateway serves, kept in the sandbox's state directory
 * (`credentials.json`, mode 0600, a directory no sandbox mounts) so that a
 * restarted daemon serves a kept sandbox's routes and logins as before. It
 * holds the secrets the CLI provided (its environment's keys): the daemon
 * cannot read them again by itself.
 */
export interface SandboxCredentialState {
  write_back: boolean
  routes: RouteState[]
  logins: LoginState[]
}

const FILE = 'credentials.json'

export function credentialStatePath(sandboxDir: string): string {
  return join(sandboxDir, FILE)
}

export async function loadCredentialState(sandboxDir: string): Promise<SandboxCredentialState | undefined> {
  try {
    return JSON.parse(await readFile(credentialStatePath(sandboxDir), 'utf8')) as SandboxCredentialState
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

export async function saveCredentialState(sandboxDir: string, state: SandboxCredentialState): Promise<void> {
  const path = credentialStatePath(sandboxDir)
  const temp = `${path}.${process.pid}.tmp`
  try {
    await writeFile(temp, JSON.stringify(state), {mode: 0o600})
    await rename(temp, path)
  } catch (error) {
    await rm(temp, {force: true})
    throw error
  }
}

/**
 * `previous` with a new grant merged in: routes and logins are replaced by name
 * (their specs and secrets updated), and keep their phantoms, so processes that
 * already hold them go on working; new ones get new phantoms.
 */
export function mergeGrant(previous: SandboxCredentialState | undefined, routes: readonly GrantedRoute[], logins: readonly GrantedLogin[], writeBack: boolean): SandboxCredentialState {
  const state: SandboxCredentialState = previous ? structuredClone(previous) : {write_back: writeBack, routes: [], logins: []}
  state.write_back = writeBack
  for (const spec of routes) {
    const existing = state.routes.find((route) => route.spec.name === spec.name)
    if (existing) existing.spec = spec
    else state.routes.push({spec, secret: phantomSecret(), active: false})
  }
  for (const spec of logins) {
    const existing = state.logins.find((login) => login.spec.name === spec.name)
    if (existing) existing.spec = spec
    else state.logins.push({spec, secrets: {access: phantomSecret(), refresh: phantomSecret(), id: phantomSecret()}, host: false, intercept: false})
  }
  return state
}

/** The phantom of a route as the sandbox holds it. */
export function routePhantom(route: RouteState): string {
  return formatPhantom(route.secret, route.spec.phantom_format)
}
