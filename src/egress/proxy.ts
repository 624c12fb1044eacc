import {connect, type NetConnectOpts, type Server, type Socket} from 'node:net'

import type {CompiledPolicy} from '../policy/schema.js'
import {chooseDialAddress, type Resolver} from './addresses.js'
import {EgressAttempt} from './attempt.js'
import type {AuditSink} from './audit.js'
import {decide, parseDestination} from './decide.js'
import {ClientGone, HeadReader, ProtocolError} from './head-reader.js'
import {type Authority, bodyFraming, checkHostHeader, forwardedHead, HEAD_END, parseAbsoluteTarget, parseAuthority, parseRequestHead} from './http-head.js'
import {errorCode, type RefusalDetail} from './messages.js'
import {httpRefusal, socksReplyFor, startsHttpRequest} from './refusal.js'
import {forwardRequest, splice} from './relay.js'
import {RequestBody} from './request-body.js'
import type {ConnectInterceptor} from './service.js'
import {readSocks4Request, SOCKS4_REJECTED, SOCKS4_VERSION} from './socks4.js'
import {readSocksRequest, SOCKS_CONNECT, SOCKS_VERSION, SocksReply, socksReply, unsupportedCommand} from './socks5.js'

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
  /** How long a client may take to send its whole request head; DEFAULT_HEAD_TIMEOUT_MS unless given. */
  readonly headTimeoutMs?: number
}

const MAX_HEAD_BYTES = 64 * 1024
export const DEFAULT_HEAD_TIMEOUT_MS = 30_000
const CONNECT_TIMEOUT_MS = 30_000
/** How long a refused client may take to read the answer and hang up before it is cut off. */
const REFUSAL_LINGER_MS = 2000

// Bigger reads from the destination halve the per-chunk cost of relaying large downloads
// (the option reaches the socket's stream; Node 20's typings do not list it).
const dialDirect: Dialer = (address, port) => connect({host: address, port, highWaterMark: 1 << 20} as NetConnectOpts)

/**
 * One sandbox's egress proxy. It serves connections accepted by any
 * `net.Server` (the daemon hands it a listener made inside the sandbox's
 * network namespace) and speaks, on the same port, SOCKS5 (first byte 0x05)
 * and HTTP/1.1 forward proxying (CONNECT and absolute-form http:// requests,
 * one per connection). Every destination is decided by name and port,
 * resolved once, checked by address and dialled by that address; every
 * attempt is audited. SOCKS4 and anything else are refused without a dial.
 */
export class EgressProxy {
  private readonly attempts = new Map<EgressAttempt, Promise<void>>()
  private readonly servers = new Set<Server>()
  private closing = false
  private readonly dialer: Dialer
  private interceptor: ConnectInterceptor | undefined

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

  /** From now on, tunnels that `interceptor` takes are handed to it once the policy allows them. */
  interceptWith(interceptor: ConnectInterceptor | undefined): void {
    this.interceptor = interceptor
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
    const reader = new HeadReader(attempt.client, MAX_HEAD_BYTES, this.options.headTimeoutMs ?? DEFAULT_HEAD_TIMEOUT_MS)
    try {
      const first = await reader.peek()
      if (first === SOCKS_VERSION) await this.serveSocks(attempt, reader)
      else if (first === SOCKS4_VERSION) await this.refuseSocks4(attempt, reader)
      else if (startsHttpRequest(first)) await this.serveHttp(attempt, reader)
      else throw new ProtocolError('malformed_request', `the connection starts with the byte 0x${first.toString(16).padStart(2, '0')}: neither an HTTP request nor a SOCKS5 greeting`)
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
      const authority = parseAuthority(request.target)
      if (this.intercept(attempt, authority, rest, 'HTTP/1.1 200 Connection Established\r\n\r\n')) return
      const upstream = await this.open(attempt, authority)
      if (upstream === undefined) return
      attempt.client.write('HTTP/1.1 200 Connection Established\r\n\r\n')
      splice(attempt, upstream, rest)
      return
    }
    const target = parseAbsoluteTarget(request.target)
    checkHostHeader(request, target)
    // Decided before the destination is: a request whose body could be read two ways is never sent anywhere.
    const framing = bodyFraming(request)
    const upstream = await this.open(attempt, target.authority)
    if (upstream === undefined) return
    forwardRequest(attempt, upstream, Buffer.from(forwardedHead(request, target, framing), 'latin1'), new RequestBody(framing), rest)
  }

  private async serveSocks(attempt: EgressAttempt, reader: HeadReader): Promise<void> {
    attempt.protocol = 'socks5'
    const {command, authority} = await readSocksRequest(reader, attempt.client)
    const rest = reader.detach()
    if (command !== SOCKS_CONNECT) {
      attempt.aim(authority)
      throw unsupportedCommand(command)
    }
    if (this.intercept(attempt, authority, rest, socksReply(SocksReply.succeeded))) return
    const upstream = await this.open(attempt, authority)
    if (upstream === undefined) return
    attempt.client.write(socksReply(SocksReply.succeeded))
    splice(attempt, upstream, rest)
  }

  /** Reads a SOCKS4(a) request only to audit what it asked for, and refuses it. */
  private async refuseSocks4(attempt: EgressAttempt, reader: HeadReader): Promise<void> {
    attempt.protocol = 'socks4'
    const request = await readSocks4Request(reader)
    reader.detach()
    attempt.aim(request.authority)
    throw new ProtocolError('unsupported_request', `${request.variant} ${request.command} is not supported: the proxy speaks SOCKS5 (ALL_PROXY names it)`)
  }

  /**
   * Decides, checks the address and dials. Answers the client itself when the
   * destination is refused or cannot be reached, and then returns undefined.
   */
  private async open(attempt: EgressAttempt, {host, port}: Authority): Promise<Socket | undefined> {
    const {policy, allowAll} = this.options
    const destination = attempt.aim({host, port})
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

  /**
   * Hands a tunnel the policy allows to the interceptor, answering the client
   * with `established`; false when the interceptor does not take it (then
   * `open` decides and dials as for any tunnel, refusals included).
   */
  private intercept(attempt: EgressAttempt, {host, port}: Authority, rest: Buffer, established: Buffer | string): boolean {
    const destination = parseDestination(host)
    if (this.interceptor === undefined || destination === undefined || !this.interceptor.intercepts(destination.host, port)) return false
    const decision = decide(this.options.policy, host, port, {allowAll: this.options.allowAll})
    if (decision.action === 'deny') return false
    attempt.host = destination.host
    attempt.port = port
    attempt.decision = decision
    attempt.intercepted = true
    attempt.client.write(established)
    this.interceptor.take(attempt.client, destination.host, port, rest)
    return true
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

  /** Answers a refused attempt (403/400/502, or a SOCKS reply), audits it now, and hangs up. */
  private refuse(attempt: EgressAttempt, detail: RefusalDetail): void {
    this.answer(attempt, detail, socksReplyFor(detail))
  }

  /** Answers in the attempt's protocol: an HTTP refusal, SOCKS4's rejection, or the SOCKS5 reply given (none: just close). */
  private answer(attempt: EgressAttempt, detail: RefusalDetail, socksReplyCode: number | undefined): void {
    switch (attempt.protocol) {
      case 'socks5': {
        this.hangUp(attempt, socksReplyCode === undefined ? undefined : socksReply(socksReplyCode))
        break
      }
      case 'socks4': {
        this.hangUp(attempt, SOCKS4_REJECTED)
        break
      }
      case 'connect':
      case 'http': {
        this.hangUp(attempt, httpRefusal(detail))
      }
    }
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
    } else {
      // A SOCKS5 error carries its own reply, or none when the protocol has already answered.
      this.answer(attempt, {reason: error.reason, host: attempt.host, port: attempt.port, why: error.message}, error.socksReply)
    }
  }

  private record(attempt: EgressAttempt): void {
    const event = attempt.auditEvent(this.options.sandboxId)
    if (event !== undefined) this.options.audit.record(event)
  }
}
