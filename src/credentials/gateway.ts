import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import type {Duplex} from 'node:stream'

import type {AuditSink} from '../egress/audit.js'
import type {CheckedDial} from '../egress/dial.js'
import type {EgressService} from '../egress/service.js'
import {caPath, SandboxCa} from './ca.js'
import type {GatewayContext} from './context.js'
import {loginHosts, TunnelInterceptor} from './intercept.js'
import {HostLoginStore, type TokenStore} from './logins.js'
import {serveRoute, serveRouteUpgrade} from './routes.js'
import type {SecretResolver} from './secrets.js'
import {GATEWAY_PORT, routeUrl} from './spec.js'
import {type LoginState, routePhantom, type SandboxCredentialState, saveCredentialState, type TokenSet} from './state.js'
import {sendGatewayError, UpstreamPool} from './upstream.js'

/** Where the trust bundle goes in the sandbox's home, and the variables that name it. */
export const TRUST_BUNDLE = '.cache/cleanroom/ca-bundle.pem'
const TRUST_VARIABLES = ['SSL_CERT_FILE', 'NODE_EXTRA_CA_CERTS', 'CODEX_CA_CERTIFICATE', 'REQUESTS_CA_BUNDLE', 'CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'PIP_CERT']

export interface GatewayOptions {
  sandboxId: string
  sandboxDir: string
  /** The sandbox user's home inside the sandbox, where the trust bundle is. */
  sandboxHome: string
  /** The daemon's state root: login locks and private stores. */
  stateRoot: string
  audit: AuditSink
  /** Why requests must be refused now for want of an audit log (egress.audit_failure: deny), or undefined. */
  auditRefusal?: () => Promise<string | undefined>
  secrets: SecretResolver
  /** Opens an upstream connection by the sandbox's egress rules. */
  dial: (host: string, port: number) => Promise<CheckedDial>
  roots: readonly string[]
}

/**
 * One sandbox's credential gateway, a service of its egress: the routes on
 * `127.0.0.1:3129` in the sandbox, the interception of its logins' hosts, and
 * the variables that point the sandbox's programs at them.
 */
export class SandboxGateway implements EgressService, GatewayContext {
  readonly port = GATEWAY_PORT
  readonly interceptor: TunnelInterceptor
  readonly pool: UpstreamPool
  private readonly routeServer: Server
  private readonly sockets = new Set<Socket>()
  private readonly deliveredAccess = new Map<string, string>()
  private sandboxCa: SandboxCa | undefined

  constructor(
    private readonly options: GatewayOptions,
    private current: SandboxCredentialState,
  ) {
    this.pool = new UpstreamPool(options.dial, options.roots)
    this.interceptor = new TunnelInterceptor(this, () => this.sandboxCa)
    this.routeServer = createServer()
    this.routeServer.on('request', (req: IncomingMessage, res: ServerResponse) => {
      serveRoute(this, req, res).catch((error: unknown) => {
        if (!res.headersSent) sendGatewayError(res, 502, 'upstream_failed', `cleanroom credential gateway: ${String(error)}`)
        else res.destroy()
      })
    })
    this.routeServer.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      void serveRouteUpgrade(this, req, socket, head).catch(() => socket.destroy())
    })
  }

  get sandboxId(): string {
    return this.options.sandboxId
  }

  get audit(): AuditSink {
    return this.options.audit
  }

  auditRefusal(): Promise<string | undefined> {
    return this.options.auditRefusal?.() ?? Promise.resolve(undefined)
  }

  get secrets(): SecretResolver {
    return this.options.secrets
  }

  state(): SandboxCredentialState {
    return this.current
  }

  async replaceState(state: SandboxCredentialState): Promise<void> {
    this.current = state
    await this.save()
  }

  async save(): Promise<void> {
    await saveCredentialState(this.options.sandboxDir, this.current)
  }

  handle(socket: Socket): void {
    // Streamed events are small writes: Nagle's algorithm would hold each one back for the previous one's ACK.
    socket.setNoDelay(true)
    this.sockets.add(socket)
    socket.once('close', () => this.sockets.delete(socket))
    this.routeServer.emit('connection', socket)
  }

  tokenStore(login: LoginState): TokenStore {
    if (login.own === undefined) return new HostLoginStore(login.spec, this.options.stateRoot, this.current.write_back)
    return new SandboxTokenStore(this, login)
  }

  delivered(login: LoginState): string | undefined {
    return this.deliveredAccess.get(login.spec.name)
  }

  setDelivered(login: LoginState, tokens: TokenSet): void {
    if (tokens.access !== undefined) this.deliveredAccess.set(login.spec.name, tokens.access)
  }

  /**
   * Makes (or renews) the sandbox's CA when it has hosts to intercept (logins,
   * routes with hosts); true when the trust bundle in the sandbox must be written again.
   */
  async prepareCa(): Promise<boolean> {
    const loginHostNames = this.current.logins.filter((login) => login.intercept).flatMap((login) => loginHosts(login).map((entry) => entry.host))
    const routeHostNames = this.current.routes.filter((route) => route.active).flatMap((route) => (route.spec.hosts ?? []).map((entry) => entry.host))
    const hosts = [...new Set([...loginHostNames, ...routeHostNames])].sort()
    if (hosts.length === 0) return false
    const {ca, renewed} = await SandboxCa.load(caPath(this.options.sandboxDir), hosts)
    this.sandboxCa = ca
    return renewed
  }

  get ca(): SandboxCa | undefined {
    return this.sandboxCa
  }

  /** The variables of the routes in use (a variable two routes set as JSON objects gets both, merged) and of the trust bundle. */
  env(): Record<string, string> {
    const env: Record<string, string> = {}
    for (const route of this.current.routes.filter((candidate) => candidate.active)) {
      for (const [name, template] of Object.entries(route.spec.env)) {
        const value = expand(template, routeUrl(route.spec.name), routePhantom(route))
        env[name] = name in env ? mergedJson(env[name]!, value) : value
      }
    }
    if (this.sandboxCa) for (const name of TRUST_VARIABLES) env[name] = `${this.options.sandboxHome}/${TRUST_BUNDLE}`
    return env
  }

  /** The arguments the routes in use put before the agent's own. */
  args(): string[] {
    return this.current.routes.filter((route) => route.active).flatMap((route) => (route.spec.args ?? []).map((arg) => expand(arg, routeUrl(route.spec.name), routePhantom(route))))
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    this.interceptor.close()
    this.pool.close()
  }
}

/** A login made inside the sandbox: its tokens live in the sandbox's state, refreshed by one refresher at a time. */
class SandboxTokenStore implements TokenStore {
  private static readonly queues = new WeakMap<LoginState, Promise<unknown>>()

  constructor(
    private readonly gateway: SandboxGateway,
    private readonly login: LoginState,
  ) {}

  async read(): Promise<TokenSet | undefined> {
    return this.login.own
  }

  async write(tokens: TokenSet): Promise<void> {
    this.login.own = tokens
    await this.gateway.save()
  }

  locked<T>(work: () => Promise<T>): Promise<T> {
    const previous = SandboxTokenStore.queues.get(this.login) ?? Promise.resolve()
    const run = previous.catch(() => undefined).then(work)
    SandboxTokenStore.queues.set(this.login, run)
    return run
  }
}

function expand(template: string, url: string, phantom: string): string {
  return template.replaceAll('{url}', url).replaceAll('{phantom}', phantom)
}

/** Two JSON objects deep-merged; anything else: the later value. */
function mergedJson(earlier: string, later: string): string {
  const parse = (text: string): unknown => {
    try {
      return JSON.parse(text) as unknown
    } catch {
      return undefined
    }
  }
  const a = parse(earlier)
  const b = parse(later)
  const isObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value)
  const merge = (x: Record<string, unknown>, y: Record<string, unknown>): Record<string, unknown> => {
    const out = {...x}
    for (const [key, value] of Object.entries(y)) out[key] = isObject(out[key]) && isObject(value) ? merge(out[key] as Record<string, unknown>, value) : value
    return out
  }
  return isObject(a) && isObject(b) ? JSON.stringify(merge(a, b)) : later
}
