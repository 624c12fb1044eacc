/**
 * How an agent's credentials reach it without entering its sandbox, as data:
 * agent plugins and the runtime config declare these (docs/credentials.md).
 */

/** Where the real secret of a route comes from; the first of a route's sources that has one wins. */
export type SecretSource =
  /** A variable of the environment `cleanroom agent` runs in. */
  | {env: string}
  /** A host file, whole (trimmed) or one string field of its JSON (`a.b.c`). */
  | {file: string; field?: string}
  /** A host command's output (trimmed), run by the daemon on first use and kept `ttl_seconds`; runtime config only. */
  | {command: string[]; ttl_seconds?: number}
  /** The secret itself, written in the runtime config; runtime config only. */
  | {value: string}

/**
 * A reverse-proxy route of the gateway: `http://127.0.0.1:3129/<name>/…` in
 * the sandbox goes to `upstream/…`, the phantom swapped for the real secret.
 */
export interface RouteSpec {
  name: string
  /** `https://host[:port][/base path]`; `http://` only for a loopback address. */
  upstream: string
  /** The header the real secret is sent in upstream, e.g. `x-api-key`. */
  header: string
  /** The header's value, `{}` standing for the secret, e.g. `Bearer {}`. */
  format: string
  secret: SecretSource[]
  /** Variables for the sandbox; `{url}` is the route's URL and `{phantom}` its phantom token. */
  env: Record<string, string>
  /** Arguments put before the user's when the agent runs (an agent with no variable for its base URL). */
  args?: string[]
  /** How the phantom looks, `{}` standing for its random part (agents that check a key's prefix). */
  phantom_format?: string
  /**
   * Hosts whose TLS is intercepted so that the route's phantom, wherever a
   * request to them carries it (a header, the query), is swapped for the real
   * secret: for agents whose base-URL setting cannot be used. Their requests go
   * to the upstream's origin, with their own path.
   */
  hosts?: HostPort[]
  /**
   * A login of the same agent this route stands in for: when that login is on
   * the host, it is used instead, unless this route's secret was provided (an
   * environment variable, a value in the runtime config).
   */
  alternative_to?: string
}

export const TOKEN_KINDS = ['access', 'refresh', 'id'] as const
export type TokenKind = (typeof TOKEN_KINDS)[number]

/** One token of a login's auth file, by its JSON path. */
export interface TokenField {
  path: string
  kind: TokenKind
  /** How its phantom looks, `{}` standing for the random part (`sk-ant-oat01-{}`); a JWT keeps its header and claims. */
  format?: string
}

/** A host, and a port when it is not 443. */
export interface HostPort {
  host: string
  port: number
}

/**
 * An agent's OAuth login on the host (ChatGPT for Codex, a Claude
 * subscription): the sandbox gets the auth file with phantoms in place of the
 * tokens, and the gateway intercepts TLS to the token endpoints and API hosts
 * only, swapping phantoms for the real tokens and refreshing on the host.
 */
export interface LoginSpec {
  name: string
  /** The auth file: `~/…` on the host, and the same place in the sandbox's home. */
  file: string
  tokens: TokenField[]
  /** Where the file keeps the access token's expiry, and in which unit (epoch seconds or milliseconds). */
  expires?: {path: string; unit: 's' | 'ms'}
  /** Where the file keeps the time of the last refresh (ISO 8601), written at each refresh. */
  refreshed_at?: string
  /** Other secret fields of the file (JSON paths), null in the sandbox's copy. */
  omit?: string[]
  /** Token endpoints (`POST` of a refresh, a code or a device grant). */
  token_endpoints: (HostPort & {path: string})[]
  /** Hosts whose requests carry the access token. */
  api_hosts: HostPort[]
  /** What to run on the host when the login has expired, for messages. */
  login_command: string
}

export interface GatewaySpec {
  routes: RouteSpec[]
  logins: LoginSpec[]
}

/** How `cleanroom agent` gives an agent its credentials (runtime config: `agents.<name>.credentials`). */
export const CREDENTIAL_MODES = ['gateway', 'copy', 'none'] as const
export type CredentialMode = (typeof CREDENTIAL_MODES)[number]

/** The gateway's port on every sandbox's loopback, beside the proxy's 3128. */
export const GATEWAY_PORT = 3129

export function routeUrl(name: string): string {
  return `http://127.0.0.1:${GATEWAY_PORT}/${name}`
}

export const ROUTE_NAME_PATTERN = /^[a-z][a-z0-9-]*$/

/** One line per route and login of a gateway: where its key goes and comes from, which hosts a login intercepts. */
export function describeGateway(gateway: GatewaySpec): string[] {
  const sources = (route: RouteSpec) => route.secret.map((source) => ('env' in source ? `$${source.env}` : 'file' in source ? source.file : 'command' in source ? source.command.join(' ') : 'config value')).join(' or ')
  const routes = gateway.routes.map((route) => `route ${route.name} -> ${route.upstream} (key from ${sources(route)})`)
  const logins = gateway.logins.map((login) => `login ${login.name}: ${login.file}, phantoms in the sandbox; intercepts ${[...new Set([...login.token_endpoints, ...login.api_hosts].map((host) => host.host))].join(', ')}`)
  return [...routes, ...logins]
}
