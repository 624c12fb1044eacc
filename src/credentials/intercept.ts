import {createServer, type IncomingMessage, type OutgoingHttpHeaders, type Server, type ServerResponse} from 'node:http'
import type {Socket} from 'node:net'
import type {Duplex} from 'node:stream'
import {TLSSocket} from 'node:tls'

import type {ConnectInterceptor} from '../egress/service.js'
import {auditedPath, GatewayRequest, unloggedRefusal} from './audit.js'
import type {SandboxCa} from './ca.js'
import type {GatewayContext} from './context.js'
import {serveTokenEndpoint} from './oauth.js'
import {formatPhantom} from './phantom.js'
import type {LoginState, RouteState} from './state.js'
import {forward} from './relay.js'
import {endWithGatewayError, exchange, forwardUpgrade, responseHeaders, sendGatewayError, upstreamHeaders, type UpstreamTarget} from './upstream.js'

const MAX_TOKEN_HOST_REQUEST_BYTES = 1 << 20
/** A token field in JSON or a form, as an answer that hands out tokens has it. */
const TOKEN_IN_ANSWER = /"(?:access|refresh|id)_token"\s*:\s*"|(?:^|[&?])(?:access|refresh|id)_token=/

/** A tunnel the gateway took over, by the TLS socket it terminated. */
interface Tunnel {
  host: string
  port: number
}

/** The credential headers' replacements for one request: each phantom found, and the real token for it. */
type Replacement = {pattern: RegExp; real: string}

/**
 * Selective TLS interception: the tunnels to the hosts of a sandbox's logins
 * (their token endpoints and API hosts) and of routes that name hosts, and
 * nothing else, end here, in TLS with a certificate from the sandbox's own CA.
 * Each request inside is sent on to the real host over a new TLS connection
 * that verifies it, with phantoms swapped for the real tokens; token
 * endpoints are served by oauth.ts.
 */
export class TunnelInterceptor implements ConnectInterceptor {
  private readonly server: Server
  private readonly tunnels = new WeakMap<Socket, Tunnel>()
  private readonly open = new Set<TLSSocket>()

  constructor(
    private readonly context: GatewayContext,
    private readonly ca: () => SandboxCa | undefined,
  ) {
    this.server = createServer()
    this.server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const tunnel = this.tunnels.get(req.socket)
      if (tunnel === undefined) {
        res.destroy()
        return
      }
      this.serve(req, res, tunnel).catch((error: unknown) => {
        if (!res.headersSent) sendGatewayError(res, 502, 'upstream_failed', `cleanroom credential gateway: ${String(error)}`)
        else res.destroy()
      })
    })
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      const tunnel = this.tunnels.get(req.socket)
      if (tunnel === undefined) socket.destroy()
      else void this.serveUpgrade(req, socket, head, tunnel).catch(() => socket.destroy())
    })
  }

  intercepts(host: string, port: number): boolean {
    return this.ca() !== undefined && (this.loginsOf(host, port).length > 0 || this.routesOf(host, port).length > 0)
  }

  take(client: Socket, host: string, port: number, head: Buffer): void {
    const ca = this.ca()
    if (ca === undefined) {
      client.destroy()
      return
    }
    if (head.length > 0) client.unshift(head)
    const secure = new TLSSocket(client, {isServer: true, secureContext: ca.contextFor(host), ALPNProtocols: ['http/1.1']})
    secure.on('error', () => secure.destroy())
    secure.on('close', () => {
      this.open.delete(secure)
      client.destroy()
    })
    this.open.add(secure)
    this.tunnels.set(secure, {host, port})
    this.server.emit('connection', secure)
  }

  close(): void {
    for (const socket of this.open) socket.destroy()
    this.open.clear()
  }

  private async serve(req: IncomingMessage, res: ServerResponse, tunnel: Tunnel): Promise<void> {
    const audit = new GatewayRequest(this.context.sandboxId, this.context.audit, req.method ?? 'GET', auditedPath(req.url))
    const unlogged = await this.refusedUnlogged(tunnel, audit)
    if (unlogged) {
      req.resume()
      sendGatewayError(res, unlogged.status, unlogged.reason, unlogged.refusal)
      return
    }
    const path = auditedPath(req.url)
    const logins = this.loginsOf(tunnel.host, tunnel.port)
    const endpoint = req.method === 'POST' ? logins.find((login) => login.spec.token_endpoints.some((entry) => entry.host === tunnel.host && entry.port === tunnel.port && entry.path === path)) : undefined
    if (endpoint) {
      await serveTokenEndpoint(this.context, endpoint, req, res, {protocol: 'https:', host: tunnel.host, port: tunnel.port, path: req.url ?? '/'}, audit)
      return
    }
    const {target, headers, credential} = await this.prepare(req, tunnel)
    if (logins.some((login) => login.spec.token_endpoints.some((entry) => entry.host === tunnel.host && entry.port === tunnel.port))) {
      await this.serveFromTokenHost(req, res, target, headers, audit, credential)
      return
    }
    const result = await forward(this.context.pool, req, res, target, headers)
    audit.record({
      host: target.host,
      port: target.port,
      address: result.address,
      action: result.refused ? 'deny' : 'allow',
      reason: result.refused?.reason ?? (result.status === undefined ? 'upstream_failed' : credential === undefined ? 'not_swapped' : 'credential_injected'),
      ...(credential !== undefined && {credential}),
      ...(result.status !== undefined && {status: result.status}),
      bytesUp: result.bytesUp,
      bytesDown: result.bytesDown,
      ...(result.error !== undefined && {error: result.error}),
    })
  }

  /**
   * Any other request to a host with a token endpoint: its answer is read
   * whole, and refused (fail closed) when it holds a token, so that an
   * endpoint the login does not name cannot hand the sandbox a real one.
   */
  private async serveFromTokenHost(req: IncomingMessage, res: ServerResponse, target: UpstreamTarget, headers: OutgoingHttpHeaders, audit: GatewayRequest, credential: string | undefined): Promise<void> {
    const where = {host: target.host, port: target.port, ...(credential !== undefined && {credential})}
    const chunks: Buffer[] = []
    let size = 0
    for await (const chunk of req) {
      size += (chunk as Buffer).length
      if (size > MAX_TOKEN_HOST_REQUEST_BYTES) {
        audit.record({...where, action: 'deny', reason: 'token_response_invalid', status: 413, error: 'request over 1 MiB'})
        sendGatewayError(res, 413, 'request_too_large', `cleanroom credential gateway: requests to ${target.host} are read whole, and this one is over 1 MiB`)
        return
      }
      chunks.push(chunk as Buffer)
    }
    let answer: Awaited<ReturnType<typeof exchange>>
    try {
      answer = await exchange(this.context.pool, req.method ?? 'GET', target, headers, Buffer.concat(chunks))
    } catch (error) {
      audit.record({...where, action: 'allow', reason: 'upstream_failed', status: 502, error: String(error)})
      sendGatewayError(res, 502, 'upstream_failed', `cleanroom credential gateway: ${target.host}: ${String(error)}`)
      return
    }
    if (TOKEN_IN_ANSWER.test(answer.body.toString('latin1'))) {
      audit.record({...where, address: answer.address, action: 'deny', reason: 'token_response_invalid', status: 502, error: `a token in the answer to ${req.method} ${auditedPath(req.url)}, not a token endpoint of the login`})
      sendGatewayError(res, 502, 'token_response_invalid', `cleanroom credential gateway: ${target.host} answered ${auditedPath(req.url)} with a token, and that path is not one of the login's token endpoints; nothing of it is passed on`)
      return
    }
    audit.record({...where, address: answer.address, action: 'allow', reason: credential === undefined ? 'not_swapped' : 'credential_injected', status: answer.status, bytesDown: answer.body.length})
    res.writeHead(answer.status, {...responseHeaders(answer.headers), 'content-length': answer.body.length})
    res.end(answer.body)
  }

  private async serveUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, tunnel: Tunnel): Promise<void> {
    const audit = new GatewayRequest(this.context.sandboxId, this.context.audit, req.method ?? 'GET', auditedPath(req.url))
    const unlogged = await this.refusedUnlogged(tunnel, audit)
    if (unlogged) {
      endWithGatewayError(socket, unlogged.status, unlogged.reason, unlogged.refusal)
      return
    }
    const {target, headers, credential} = await this.prepare(req, tunnel)
    const result = await forwardUpgrade(this.context.pool, req, socket, head, target, headers)
    audit.record({host: target.host, port: target.port, address: result.address, action: result.refused ? 'deny' : 'allow', reason: result.refused?.reason ?? (credential === undefined ? 'not_swapped' : 'credential_injected'), ...(credential !== undefined && {credential}), ...(result.status !== undefined && {status: result.status}), bytesUp: result.bytesUp, bytesDown: result.bytesDown})
  }

  /** A request in a tunnel that must not go on for want of an audit log: its refusal, recorded (the write that finds the log working again). */
  private async refusedUnlogged(tunnel: Tunnel, audit: GatewayRequest): Promise<ReturnType<typeof unloggedRefusal> | undefined> {
    const why = await this.context.auditRefusal()
    if (why === undefined) return undefined
    const refusal = unloggedRefusal(tunnel.host, tunnel.port, why)
    audit.record({host: tunnel.host, port: tunnel.port, action: 'deny', reason: 'audit_unavailable', status: refusal.status, error: why})
    return refusal
  }

  /**
   * Where a request in a tunnel goes and with which headers: to the tunnel's
   * host, or to the origin of the route that covers it (its upstream, which the
   * runtime config may change), with the phantoms of the logins and routes that
   * cover the host swapped for their real values, in the headers and the query.
   */
  private async prepare(req: IncomingMessage, tunnel: Tunnel): Promise<{target: UpstreamTarget; headers: OutgoingHttpHeaders; credential?: string}> {
    const routes = this.routesOf(tunnel.host, tunnel.port)
    const [route] = routes
    let target: UpstreamTarget = {protocol: 'https:', host: tunnel.host, port: tunnel.port, path: req.url ?? '/'}
    if (route) {
      const upstream = new URL(route.spec.upstream)
      target = {protocol: upstream.protocol === 'http:' ? 'http:' : 'https:', host: upstream.hostname.replace(/^\[|\]$/g, ''), port: upstream.port === '' ? (upstream.protocol === 'http:' ? 80 : 443) : Number(upstream.port), path: target.path}
    }
    const headers = upstreamHeaders(req.headers, target)
    let credential: string | undefined
    const apply = (name: string, replacements: readonly Replacement[]) => {
      for (const [header, value] of Object.entries(headers)) {
        if (typeof value !== 'string') continue
        const swapped = swapHeader(value, replacements)
        if (swapped !== value) {
          headers[header] = swapped
          credential = name
        }
      }
      const path = swapText(target.path, replacements)
      if (path !== target.path) {
        target = {...target, path}
        credential = name
      }
    }
    for (const login of this.loginsOf(tunnel.host, tunnel.port)) apply(login.spec.name, await this.replacements(login))
    for (const covering of routes) {
      const secret = await this.context.secrets.resolve(covering.spec.secret).catch(() => undefined)
      if (secret !== undefined) apply(covering.spec.name, [{pattern: phantomPattern(covering.secret, covering.spec.phantom_format), real: secret.value}])
    }
    return {target, headers, ...(credential !== undefined && {credential})}
  }

  private loginsOf(host: string, port: number): LoginState[] {
    return this.context.state().logins.filter((login) => login.intercept && loginHosts(login).some((entry) => entry.host === host && entry.port === port))
  }

  private routesOf(host: string, port: number): RouteState[] {
    return this.context.state().routes.filter((route) => route.active && (route.spec.hosts ?? []).some((entry) => entry.host === host && entry.port === port))
  }

  private async replacements(login: LoginState): Promise<Replacement[]> {
    const tokens = (await this.context.tokenStore(login).read()) ?? {}
    const list: Replacement[] = []
    for (const kind of ['access', 'id'] as const) {
      const real = tokens[kind]
      if (real === undefined) continue
      const format = login.spec.tokens.find((token) => token.kind === kind)?.format
      list.push({pattern: phantomPattern(login.secrets[kind], format), real})
    }
    for (const [secret, real] of Object.entries(login.extras ?? {})) list.push({pattern: phantomPattern(secret), real})
    return list
  }
}

/** The hosts (and ports) whose tunnels a login's interception takes. */
export function loginHosts(login: LoginState): {host: string; port: number}[] {
  return [...login.spec.token_endpoints, ...login.spec.api_hosts]
}

/** A phantom as it may appear: in its format, or as a JWT whose signature is its random part. */
function phantomPattern(secret: string, format?: string): RegExp {
  const escape = (text: string) => text.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const formatted = escape(formatPhantom(secret, format))
  return new RegExp(`[A-Za-z0-9_-]+\\.[A-Za-z0-9_-]+\\.${escape(secret)}(?![A-Za-z0-9_-])|${formatted}(?![A-Za-z0-9_-])`, 'g')
}

/** A header value with phantoms swapped, a Basic credential decoded and encoded again. */
function swapHeader(value: string, replacements: readonly Replacement[]): string {
  const basic = /^(basic\s+)([A-Za-z0-9+/=]+)$/i.exec(value)
  if (basic) {
    const decoded = Buffer.from(basic[2]!, 'base64').toString('utf8')
    const swapped = swapText(decoded, replacements)
    return swapped === decoded ? value : `${basic[1]}${Buffer.from(swapped, 'utf8').toString('base64')}`
  }
  return swapText(value, replacements)
}

function swapText(text: string, replacements: readonly Replacement[]): string {
  let out = text
  for (const {pattern, real} of replacements) out = out.replace(pattern, () => real)
  return out
}
