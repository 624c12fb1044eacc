import {Agent as HttpAgent, type IncomingHttpHeaders, type IncomingMessage, type OutgoingHttpHeaders, request as httpRequest, type ServerResponse} from 'node:http'
import {Agent as HttpsAgent} from 'node:https'
import {isIP, type Socket} from 'node:net'
import type {Duplex} from 'node:stream'
import {connect as tlsConnect} from 'node:tls'

import type {CheckedDial} from '../egress/dial.js'
import {errorCode, type RefusalDetail, refusalMessage, refusalStatus} from '../egress/messages.js'

/** Where a request goes: an origin and the path (with query) to ask it for. */
export interface UpstreamTarget {
  protocol: 'http:' | 'https:'
  host: string
  port: number
  path: string
}

/** How a forwarded request went, for the audit log. */
export interface ForwardResult {
  status?: number
  address: string | null
  bytesUp: number
  bytesDown: number
  error?: string
  refused?: RefusalDetail
}

export const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-authenticate', 'proxy-authorization', 'proxy-connection', 'te', 'trailer', 'transfer-encoding', 'upgrade'])
const MAX_BUFFERED_BYTES = 1 << 20

/** An upstream connection the sandbox's policy or the network refused. */
export class UpstreamRefused extends Error {
  constructor(readonly detail: RefusalDetail) {
    super(refusalMessage(detail))
  }
}

/**
 * Keep-alive connections to the gateway's upstreams, each opened through the
 * sandbox's egress rules (`dial`): the policy decides, the name is resolved
 * once and the address checked. TLS verifies against `roots`.
 */
export class UpstreamPool {
  private readonly agents = new Map<string, HttpAgent>()
  private readonly addresses = new WeakMap<Socket, string>()
  /** Connections the relay (relay.ts) keeps alive between requests, by origin, and those in use. */
  private readonly idle = new Map<string, Set<Socket>>()
  private readonly busy = new Set<Socket>()
  private readonly idleListeners = new WeakMap<Socket, () => void>()

  constructor(
    private readonly dial: (host: string, port: number) => Promise<CheckedDial>,
    private readonly roots: readonly string[],
  ) {}

  agent(target: UpstreamTarget): HttpAgent {
    const key = originOf(target)
    let agent = this.agents.get(key)
    if (agent === undefined) {
      agent = target.protocol === 'https:' ? new HttpsAgent({keepAlive: true}) : new HttpAgent({keepAlive: true})
      const connectUpstream = (_options: unknown, callback: (error: Error | null, socket?: Duplex) => void): undefined => {
        this.connect(target).then(
          (socket) => callback(null, socket),
          (error: Error) => callback(error),
        )
        return undefined
      }
      ;(agent as unknown as {createConnection: typeof connectUpstream}).createConnection = connectUpstream
      this.agents.set(key, agent)
    }
    return agent
  }

  /** The address a pooled connection was dialled at. */
  addressOf(socket: Socket | null | undefined): string | null {
    return socket ? (this.addresses.get(socket) ?? null) : null
  }

  /** A kept-alive connection to `target` the relay left idle, or a new one. */
  async take(target: UpstreamTarget): Promise<Socket> {
    const idle = this.idle.get(originOf(target))
    for (const socket of idle ?? []) {
      idle!.delete(socket)
      const drop = this.idleListeners.get(socket)!
      for (const event of ['data', 'end', 'close', 'error']) socket.off(event, drop)
      if (socket.destroyed || !socket.writable) continue
      socket.ref()
      this.busy.add(socket)
      return socket
    }
    const socket = await this.connect(target)
    this.busy.add(socket)
    return socket
  }

  /** A connection whose exchange ended cleanly, kept for the next request; anything it says while idle ends it. */
  release(target: UpstreamTarget, socket: Socket): void {
    this.busy.delete(socket)
    if (socket.destroyed) return
    const key = originOf(target)
    const idle = this.idle.get(key) ?? new Set<Socket>()
    this.idle.set(key, idle)
    const drop = () => {
      idle.delete(socket)
      socket.destroy()
    }
    this.idleListeners.set(socket, drop)
    for (const event of ['data', 'end', 'close', 'error']) socket.once(event, drop)
    socket.resume()
    socket.unref()
    idle.add(socket)
  }

  /** A connection that must not be used again (an answer cut short, bytes after one, `Connection: close`). */
  discard(socket: Socket): void {
    this.busy.delete(socket)
    socket.on('error', () => undefined)
    socket.destroy()
  }

  close(): void {
    for (const agent of this.agents.values()) agent.destroy()
    this.agents.clear()
    for (const socket of [...this.busy, ...[...this.idle.values()].flatMap((idle) => [...idle])]) socket.destroy()
    this.busy.clear()
    this.idle.clear()
  }

  private async connect(target: UpstreamTarget): Promise<Socket> {
    const dialled = await this.dial(target.host, target.port)
    if (!dialled.ok) throw new UpstreamRefused(dialled.detail)
    // A request's head and body go as separate writes: Nagle's algorithm would hold the body for the head's ACK.
    dialled.socket.setNoDelay(true)
    if (target.protocol === 'http:') {
      this.addresses.set(dialled.socket, dialled.address)
      return dialled.socket
    }
    const secure = tlsConnect({socket: dialled.socket, ca: [...this.roots], ALPNProtocols: ['http/1.1'], ...(isIP(target.host) === 0 && {servername: target.host})})
    this.addresses.set(secure, dialled.address)
    return secure
  }
}

/** The request headers to send upstream: hop-by-hop and proxy headers left out, `Host` the upstream's. */
export function upstreamHeaders(headers: IncomingHttpHeaders, target: UpstreamTarget): OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((token) => token.trim()))
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || name === 'host' || name.startsWith('proxy-')) continue
    out[name] = value
  }
  const defaultPort = target.protocol === 'https:' ? 443 : 80
  out.host = target.port === defaultPort ? bracketed(target.host) : `${bracketed(target.host)}:${target.port}`
  return out
}

/** An upstream answer's headers to send on: hop-by-hop ones left out. */
export function responseHeaders(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const named = new Set(String(headers.connection ?? '').toLowerCase().split(',').map((token) => token.trim()))
  const out: OutgoingHttpHeaders = {}
  for (const [name, value] of Object.entries(headers)) if (value !== undefined && !HOP_BY_HOP.has(name) && !named.has(name)) out[name] = value
  return out
}

/** One request whose answer is read whole (token endpoints): at most 1 MiB. */
export function exchange(pool: UpstreamPool, method: string, target: UpstreamTarget, headers: OutgoingHttpHeaders, body: Buffer): Promise<{status: number; headers: IncomingHttpHeaders; body: Buffer; address: string | null}> {
  return new Promise((resolve, reject) => {
    // An answer read for tokens must not come compressed: the gateway could not see them, or rewrite them.
    const upstream = httpRequest({protocol: target.protocol, method, path: target.path, headers: {...headers, 'accept-encoding': 'identity', 'content-length': body.length}, agent: pool.agent(target)})
    upstream.on('response', (answer) => {
      const chunks: Buffer[] = []
      let size = 0
      answer.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size > MAX_BUFFERED_BYTES) {
          upstream.destroy(new Error('the token endpoint answered more than 1 MiB'))
          return
        }
        chunks.push(chunk)
      })
      answer.on('end', () => resolve({status: answer.statusCode ?? 502, headers: answer.headers, body: Buffer.concat(chunks), address: pool.addressOf(answer.socket)}))
      answer.on('error', reject)
    })
    upstream.on('error', reject)
    upstream.end(body)
  })
}

/**
 * Forwards a WebSocket (or any Upgrade) request and, once the upstream
 * switches protocols, splices the two connections.
 */
export function forwardUpgrade(pool: UpstreamPool, req: IncomingMessage, client: Duplex, head: Buffer, target: UpstreamTarget, headers: OutgoingHttpHeaders): Promise<ForwardResult> {
  return new Promise((resolve) => {
    const result: ForwardResult = {address: null, bytesUp: 0, bytesDown: 0}
    const upstream = httpRequest({protocol: target.protocol, method: req.method, path: target.path, headers: {...headers, connection: 'Upgrade', upgrade: req.headers.upgrade ?? 'websocket'}, agent: pool.agent(target)})
    client.on('error', () => undefined)
    upstream.on('upgrade', (answer, socket, upstreamHead) => {
      result.status = answer.statusCode
      result.address = pool.addressOf(socket as Socket)
      const lines = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`]
      for (let i = 0; i < answer.rawHeaders.length; i += 2) lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`)
      client.write(`${lines.join('\r\n')}\r\n\r\n`)
      if (upstreamHead.length > 0) client.write(upstreamHead)
      if (head.length > 0) socket.write(head)
      socket.on('data', (chunk: Buffer) => (result.bytesDown += chunk.length))
      client.on('data', (chunk: Buffer) => (result.bytesUp += chunk.length))
      socket.pipe(client)
      client.pipe(socket)
      socket.on('error', () => client.destroy())
      socket.on('close', () => {
        client.destroy()
        resolve(result)
      })
      client.on('close', () => socket.destroy())
    })
    upstream.on('response', (answer) => {
      result.status = answer.statusCode
      const lines = [`HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}`]
      for (let i = 0; i < answer.rawHeaders.length; i += 2) if (!HOP_BY_HOP.has(answer.rawHeaders[i]!.toLowerCase())) lines.push(`${answer.rawHeaders[i]}: ${answer.rawHeaders[i + 1]}`)
      const chunks: Buffer[] = []
      answer.on('data', (chunk: Buffer) => chunks.push(chunk))
      answer.on('end', () => {
        const bodyBytes = Buffer.concat(chunks)
        result.bytesDown = bodyBytes.length
        client.end(`${lines.join('\r\n')}\r\nContent-Length: ${bodyBytes.length}\r\nConnection: close\r\n\r\n${bodyBytes.toString('latin1')}`, 'latin1')
        resolve(result)
      })
    })
    upstream.on('error', (error) => {
      if (error instanceof UpstreamRefused) result.refused = error.detail
      result.error = error instanceof UpstreamRefused ? error.detail.reason : errorCode(error)
      endWithGatewayError(client, error instanceof UpstreamRefused ? refusalStatus(error.detail.reason) : 502, result.error, upstreamFailure(target, error))
      resolve(result)
    })
    upstream.end()
  })
}

export function upstreamFailure(target: UpstreamTarget, error: unknown): string {
  if (error instanceof UpstreamRefused) return `cleanroom credential gateway: ${error.message}`
  return `cleanroom credential gateway: could not reach ${target.protocol}//${bracketed(target.host)}:${target.port} (${errorCode(error)})`
}

/** The JSON of an error the gateway answers itself: the shape both the Anthropic and the OpenAI clients read. */
export function gatewayErrorBody(code: string, message: string): Record<string, unknown> {
  return {type: 'error', error: {type: `cleanroom_${code}`, code, message}}
}

export function sendGatewayError(res: ServerResponse, status: number, code: string, message: string, headers: OutgoingHttpHeaders = {}): void {
  const text = JSON.stringify(gatewayErrorBody(code, message))
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'x-cleanroom-reason': code, ...headers})
  res.end(text)
}

/** The same error as sendGatewayError, written on the raw connection of an Upgrade request, which is then closed. */
export function endWithGatewayError(socket: Duplex, status: number, code: string, message: string): void {
  const text = JSON.stringify(gatewayErrorBody(code, message))
  socket.end(`HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nX-Cleanroom-Reason: ${code}\r\nConnection: close\r\n\r\n${text}`)
}

function originOf(target: UpstreamTarget): string {
  return `${target.protocol}//${target.host}:${target.port}`
}

function bracketed(host: string): string {
  return host.includes(':') ? `[${host}]` : host
}
