import {connect, type NetConnectOpts, type Server, type Socket} from 'node:net'
import {performance} from 'node:perf_hooks'

import type {CompiledPolicy} from '../policy/schema.js'
import {chooseDialAddress, type Resolver} from './addresses.js'
import type {AuditEvent, AuditSink, EgressProtocol} from './audit.js'
import {decide, type EgressDecision, parseDestination} from './decide.js'
import {ClientGone, HeadReader, ProtocolError} from './head-reader.js'
import {type Authority, checkHostHeader, forwardedHead, HEAD_END, parseAbsoluteTarget, parseAuthority, parseRequestHead} from './http-head.js'
import {errorCode, type RefusalDetail, type RefusalReason, refusalMessage, refusalStatus, shownReason} from './messages.js'
import {readSocksRequest, SOCKS_VERSION, SocksReply, socksReply} from './socks5.js'

/** Opens a TCP connection to an IP address (never a name: the proxy has already resolved and checked it). */
export type Dialer = (address: string, port: number) => Socket

export interface EgressProxyOptions {
  readonly sandboxId: string
  readonly policy: CompiledPolicy
  /** `--dangerously-allow-all`: every destination no deny rule refuses; forbidden addresses stay closed. */
  readonly allowAll?: boolean
  readonly audit: AuditSink
  /** Refuse every connection while the audit sink reports a failure (runtime config egress.audit_failure: deny). */
  readonly requireAudit?: boolean
  readonly resolver?: Resolver
  readonly connect?: Dialer
  /** The host's own addresses; `os.networkInterfaces()` by default. */
  readonly localAddresses?: () => readonly string[]
}

const MAX_HEAD_BYTES = 64 * 1024
const HEAD_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 30_000
/** How long a refused client may take to read the answer and hang up before it is cut off. */
const REFUSAL_LINGER_MS = 2000
const MAX_AUDITED_HOST_LENGTH = 255

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
}

// Bigger reads from the destination halve the per-chunk cost of relaying large downloads
// (the option reaches the socket's stream; Node 20's typings do not list it).
const dialDirect: Dialer = (address, port) => connect({host: address, port, highWaterMark: 1 << 20} as NetConnectOpts)

/**
 * One sandbox's egress proxy. It serves connections accepted by any
 * `net.Server` (the daemon hands it a listener made inside the sandbox's
 * network namespace) and speaks, on the same port, SOCKS5 (first byte 0x05)
 * and HTTP/1.1 forward proxying (CONNECT and absolute-form http:// requests).
 * Every destination is decided by name and port, resolved once, checked by
 * address and dialled by that address; every attempt is audited.
 */
export class EgressProxy {
  private readonly attempts = new Map<EgressAttempt, Promise<void>>()
  private readonly servers = new Set<Server>()
  private closing = false
  private readonly dialer: Dialer

  constructor(private readonly options: EgressProxyOptions) {
    this.dialer = options.connect ?? dialDirect
  }

  /** Serves one accepted client connection. */
  handle(socket: Socket): void {
    if (this.closing) {
      socket.destroy()
      return
    }
    const attempt = new EgressAttempt(socket)
    const served = this.serve(attempt).finally(() => this.attempts.delete(attempt))
    this.attempts.set(attempt, served)
  }

  /**
   * Serves every connection `server` accepts from now on. The server stays the
   * caller's to close; create it with `allowHalfOpen: true`, or a client that
   * half-closes after its request (`nc -N`) loses the response.
   */
  listen(server: Server): void {
    server.on('connection', this.onConnection)
    this.servers.add(server)
  }

  /** Stops serving new connections and destroys every open one; resolves when all are audited. */
  async close(): Promise<void> {
    this.closing = true
    for (const server of this.servers) server.off('connection', this.onConnection)
    this.servers.clear()
    const open = [...this.attempts]
    for (const [attempt] of open) attempt.destroy()
    await Promise.all(open.map(([, served]) => served))
  }

  private readonly onConnection = (socket: Socket): void => {
    this.handle(socket)
  }

  private async serve(attempt: EgressAttempt): Promise<void> {
    const reader = new HeadReader(attempt.client, MAX_HEAD_BYTES, HEAD_TIMEOUT_MS)
    try {
      if ((await reader.peek()) === SOCKS_VERSION) await this.serveSocks(attempt, reader)
      else await this.serveHttp(attempt, reader)
    } catch (error) {
      this.fail(attempt, reader, error)
    }
    await attempt.closed()
    this.record(attempt)
  }

  private async serveHttp(attempt: EgressAttempt, reader: HeadReader): Promise<void> {
    const request = parseRequestHead(await reader.through(HEAD_END))
    const rest = reader.detach()
    if (request.method === 'CONNECT') {
      attempt.protocol = 'connect'
      const upstream = await this.open(attempt, parseAuthority(request.target))
      if (upstream === undefined) return
      attempt.client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      this.splice(attempt, upstream, rest)
      return
    }
    const target = parseAbsoluteTarget(request.target)
    checkHostHeader(request, target)
    const upstream = await this.open(attempt, target.authority)
    if (upstream === undefined) return
    upstream.write(Buffer.from(forwardedHead(request, target), 'latin1'))
    this.splice(attempt, upstream, rest)
  }

  private async serveSocks(attempt: EgressAttempt, reader: HeadReader): Promise<void> {
    attempt.protocol = 'socks5'
    const authority = await readSocksRequest(reader, attempt.client)
    const rest = reader.detach()
    const upstream = await this.open(attempt, authority)
    if (upstream === undefined) return
    attempt.client.write(socksReply(SocksReply.succeeded))
    this.splice(attempt, upstream, rest)
  }

  /**
   * Decides, checks the address and dials. Answers the client itself when the
   * destination is refused or cannot be reached, and then returns undefined.
   */
  private async open(attempt: EgressAttempt, {host, port}: Authority): Promise<Socket | undefined> {
    const {policy, allowAll} = this.options
    const destination = parseDestination(host)
    attempt.host = destination?.host ?? host.slice(0, MAX_AUDITED_HOST_LENGTH)
    attempt.port = port
    const auditFailure = this.options.requireAudit ? await this.options.audit.unavailable?.() : undefined
    if (auditFailure !== undefined) {
      // Refused before any decision: the refusal's own audit line is the write that finds the log working again.
      attempt.decision = {action: 'deny', reason: 'audit_unavailable'}
      this.refuse(attempt, {reason: 'audit_unavailable', host: attempt.host, port, why: auditFailure})
      return undefined
    }
    attempt.decision = decide(policy, host, port, {allowAll})
    if (attempt.decision.action === 'deny' || destination === undefined) {
      this.refuse(attempt, {reason: attempt.decision.reason, host: attempt.host, port, rule: attempt.decision.rule})
      return undefined
    }

    const choice = await attempt.unlessGone(chooseDialAddress(policy, destination, port, this.options))
    if (choice === undefined) {
      attempt.error = 'client_closed'
      return undefined
    }
    if (!choice.ok) {
      const {decision, address, addressClass, why} = choice
      attempt.decision = decision
      attempt.resolvedIp = address ?? null
      attempt.error = why ?? addressClass
      this.refuse(attempt, {reason: decision.reason, rule: decision.rule, host: attempt.host, port, address, addressClass, why})
      return undefined
    }

    attempt.resolvedIp = choice.address
    try {
      return await this.dial(attempt, choice.address, port)
    } catch (error) {
      attempt.error = errorCode(error)
      this.refuse(attempt, {reason: 'upstream_failed', host: attempt.host, port, address: choice.address, why: attempt.error})
      return undefined
    }
  }

  private dial(attempt: EgressAttempt, address: string, port: number): Promise<Socket> {
    const upstream = this.dialer(address, port)
    attempt.upstream = upstream
    let failure: unknown
    upstream.on('error', (error) => {
      failure ??= error
      attempt.error ??= errorCode(error)
    })
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => upstream.destroy(Object.assign(new Error('connect timed out'), {code: 'ETIMEDOUT'})), CONNECT_TIMEOUT_MS)
      const abandon = (): void => {
        upstream.destroy()
      }
      const settle = (): void => {
        clearTimeout(timer)
        attempt.client.off('close', abandon)
        upstream.off('connect', connected)
        upstream.off('close', failed)
      }
      const connected = (): void => {
        settle()
        resolve(upstream)
      }
      const failed = (): void => {
        settle()
        reject(failure ?? Object.assign(new Error('the connection was abandoned'), {code: 'ECONNABORTED'}))
      }
      attempt.client.once('close', abandon)
      upstream.once('connect', connected)
      upstream.once('close', failed)
    })
  }

  /** Relays both ways; when one side closes, the other follows (at once if it broke, after flushing if not). */
  private splice(attempt: EgressAttempt, upstream: Socket, rest: Buffer): void {
    const {client} = attempt
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    if (rest.length > 0) upstream.write(rest)
    client.pipe(upstream)
    upstream.pipe(client)
    client.once('close', () => upstream.destroy())
    upstream.once('close', (hadError) => {
      if (hadError) client.resetAndDestroy()
      else client.end(() => client.destroy())
    })
  }

  /** Answers a refused attempt (403/400/502, or a SOCKS reply), audits it now, and hangs up. */
  private refuse(attempt: EgressAttempt, detail: RefusalDetail): void {
    if (attempt.protocol === 'socks5') this.refuseSocks(attempt, socksReplyFor(detail))
    else this.hangUp(attempt, httpRefusal(detail))
  }

  private refuseSocks(attempt: EgressAttempt, reply: number | undefined): void {
    this.hangUp(attempt, reply === undefined ? undefined : socksReply(reply))
  }

  private hangUp(attempt: EgressAttempt, answer: Buffer | string | undefined): void {
    this.record(attempt)
    const {client} = attempt
    if (answer === undefined) client.end()
    else client.end(answer)
    client.resume()
    setTimeout(() => client.destroy(), REFUSAL_LINGER_MS).unref()
  }

  /** Ends an attempt whose request was not served: answered when the protocol allows, audited when the client sent anything. */
  private fail(attempt: EgressAttempt, reader: HeadReader, error: unknown): void {
    const silent = !reader.started && (error instanceof ClientGone || (error instanceof ProtocolError && error.reason === 'head_timeout'))
    reader.detach()
    if (silent || !(error instanceof ClientGone || error instanceof ProtocolError)) {
      if (!silent) attempt.error = errorCode(error)
      attempt.destroy()
      return
    }
    attempt.decision = {action: 'deny', reason: error instanceof ProtocolError ? error.reason : 'malformed_request'}
    attempt.error = error.message
    if (error instanceof ClientGone) {
      this.record(attempt)
      attempt.destroy()
    } else if (attempt.protocol === 'socks5') {
      // A SOCKS error carries its own reply, or none when the protocol has already answered.
      this.refuseSocks(attempt, error.socksReply)
    } else {
      this.hangUp(attempt, httpRefusal({reason: error.reason, host: attempt.host, port: attempt.port, why: error.message}))
    }
  }

  private record(attempt: EgressAttempt): void {
    const event = attempt.auditEvent(this.options.sandboxId)
    if (event !== undefined) this.options.audit.record(event)
  }
}

/** One client connection through the proxy and what became of it. */
class EgressAttempt {
  protocol: EgressProtocol = 'http'
  host = ''
  port = 0
  resolvedIp: string | null = null
  decision: EgressDecision | undefined
  error: string | undefined
  upstream: Socket | undefined
  private readonly time = new Date().toISOString()
  private readonly start = performance.now()
  private recorded = false
  private readonly gone: Promise<void>

  constructor(readonly client: Socket) {
    client.on('error', (error) => {
      this.error ??= errorCode(error)
    })
    this.gone = closedOf(client)
  }

  /** `work`'s result, or undefined if the client hangs up first. */
  async unlessGone<T>(work: Promise<T>): Promise<T | undefined> {
    return Promise.race([work, this.gone.then(() => undefined)])
  }

  async closed(): Promise<void> {
    await this.gone
    if (this.upstream) await closedOf(this.upstream)
  }

  destroy(): void {
    this.client.destroy()
    this.upstream?.destroy()
  }

  /** The audit line, once: undefined when already recorded, or when the client never asked for anything. */
  auditEvent(sandboxId: string): AuditEvent | undefined {
    if (this.recorded || this.decision === undefined) return undefined
    this.recorded = true
    return {
      time: this.time,
      sandbox_id: sandboxId,
      host: this.host,
      port: this.port,
      resolved_ip: this.resolvedIp,
      action: this.decision.action,
      reason: this.decision.reason,
      ...(this.decision.rule !== undefined && {rule: this.decision.rule}),
      ...(this.error !== undefined && {error: this.error}),
      bytes_up: this.upstream?.bytesWritten ?? 0,
      bytes_down: this.upstream?.bytesRead ?? 0,
      duration_ms: Math.round(performance.now() - this.start),
      protocol: this.protocol,
    }
  }
}

function httpRefusal(detail: RefusalDetail): string {
  const status = refusalStatus(detail.reason)
  const body = refusalMessage(detail)
  const head = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Cleanroom-Reason: ${shownReason(detail.reason)}`,
    'Connection: close',
  ]
  return `${head.join('\r\n')}${HEAD_END}${body}`
}

/** The SOCKS5 reply for a refusal: "not allowed by ruleset" for the policy, the network's own answer for a failed dial. */
function socksReplyFor({reason, why}: {reason: RefusalReason; why?: string}): number | undefined {
  switch (reason) {
    case 'resolve_failed': {
      return SocksReply.hostUnreachable
    }
    case 'upstream_failed': {
      if (why === 'ECONNREFUSED') return SocksReply.connectionRefused
      if (why === 'ENETUNREACH') return SocksReply.networkUnreachable
      if (why === 'EHOSTUNREACH' || why === 'ETIMEDOUT') return SocksReply.hostUnreachable
      return SocksReply.generalFailure
    }
    default: {
      return SocksReply.notAllowedByRuleset
    }
  }
}

function closedOf(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}
