import {createServer, type IncomingHttpHeaders, type Server as HttpServer} from 'node:http'
import {type AddressInfo, connect, createServer as createNetServer, type Server as NetServer, type Socket} from 'node:net'
import {join} from 'node:path'

import type {Resolver} from '../../src/egress/addresses.js'
import {type AuditEvent, AuditLog, readAudit} from '../../src/egress/audit.js'
import {EgressProxy, type EgressProxyOptions} from '../../src/egress/proxy.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import type {CompiledPolicy} from '../../src/policy/schema.js'

export interface RuleInput {
  host: string
  ports?: number[]
}

/** A compiled policy, through the real compiler so rules are normalised as in production. */
export function policyOf(rules: {allow?: RuleInput[]; deny?: RuleInput[]}): CompiledPolicy {
  return recompilePolicy({version: 1, network_default: 'deny', allow: rules.allow ?? [], deny: rules.deny ?? []})
}

/** A resolver answering from a fixed name → addresses map, counting lookups; other names fail like DNS does. */
export function mapResolver(answers: Record<string, string[]>): Resolver & {lookups: string[]} {
  const lookups: string[] = []
  const resolver = async (host: string): Promise<string[]> => {
    lookups.push(host)
    const addresses = answers[host]
    if (addresses === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), {code: 'ENOTFOUND'})
    return addresses
  }
  return Object.assign(resolver, {lookups})
}

export interface RecordedRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  rawHeaders: string[]
  body: string
}

/**
 * An HTTP server on 127.0.0.1 that records every TCP connection it accepts,
 * so a test can assert that not a single byte reached it.
 */
export class RecordingServer {
  connections = 0
  readonly requests: RecordedRequest[] = []

  private constructor(
    readonly name: string,
    private readonly server: HttpServer,
    readonly port: number,
  ) {}

  static async start(name: string): Promise<RecordingServer> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const address = server.address()
    if (address === null || typeof address === 'string') throw new Error('the test server has no TCP address')
    const recording = new RecordingServer(name, server, address.port)
    server.on('connection', () => recording.connections++)
    server.on('request', (request, response) => {
      let body = ''
      request.setEncoding('utf8')
      request.on('data', (chunk: string) => (body += chunk))
      request.on('end', () => {
        recording.requests.push({method: request.method ?? '', url: request.url ?? '', headers: request.headers, rawHeaders: request.rawHeaders, body})
        response.end(`hello from ${name}: ${request.method} ${request.url}`)
      })
    })
    return recording
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** A raw TCP client of the proxy: what it sends and receives is exactly what is on the wire. */
export class WireClient {
  private received = Buffer.alloc(0)
  private ended = false
  private waiters: Array<() => void> = []

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk])
      this.notify()
    })
    socket.on('error', () => undefined)
    socket.on('close', () => {
      this.ended = true
      this.notify()
    })
  }

  static async connect(port: number): Promise<WireClient> {
    const socket = connect({host: '127.0.0.1', port})
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve)
      socket.once('error', reject)
    })
    return new WireClient(socket)
  }

  send(data: Buffer | string): void {
    this.socket.write(data)
  }

  /** Waits until `count` bytes arrived (or the connection closed) and takes them. */
  async take(count: number): Promise<Buffer> {
    await this.until(() => this.received.length >= count)
    return this.consume(Math.min(count, this.received.length))
  }

  /** Waits for `marker` and takes everything up to and including it. */
  async takeThrough(marker: string): Promise<string> {
    await this.until(() => this.received.includes(marker))
    const at = this.received.indexOf(marker)
    return this.consume(at === -1 ? this.received.length : at + marker.length).toString('latin1')
  }

  /** Everything until the proxy closes the connection. */
  async rest(): Promise<string> {
    await this.until(() => this.ended)
    return this.consume(this.received.length).toString('latin1')
  }

  close(): void {
    this.socket.destroy()
  }

  private consume(count: number): Buffer {
    const taken = this.received.subarray(0, count)
    this.received = this.received.subarray(count)
    return taken
  }

  private async until(done: () => boolean): Promise<void> {
    while (!done() && !this.ended) await new Promise<void>((resolve) => this.waiters.push(resolve))
  }

  private notify(): void {
    for (const wake of this.waiters.splice(0)) wake()
  }
}

/** The parts of an HTTP response a test looks at. */
export function parseResponse(text: string): {status: number; headers: Map<string, string>; body: string} {
  const split = text.indexOf('\r\n\r\n')
  const [statusLine = '', ...lines] = text.slice(0, split).split('\r\n')
  const headers = new Map(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]))
  return {status: Number(statusLine.split(' ')[1]), headers, body: text.slice(split + 4)}
}

/** A proxy on 127.0.0.1 with its audit log in `dir`, recording every address it dials. */
export class ProxyUnderTest {
  private readonly clients: WireClient[] = []

  private constructor(
    readonly proxy: EgressProxy,
    private readonly listener: NetServer,
    private readonly audit: AuditLog,
    readonly port: number,
    /** `address:port` of every connection the proxy opened. */
    readonly dials: string[],
  ) {}

  static async start(dir: string, options: Omit<EgressProxyOptions, 'audit' | 'connect' | 'sandboxId'>): Promise<ProxyUnderTest> {
    const audit = await AuditLog.open(join(dir, 'egress.jsonl'))
    const dials: string[] = []
    const proxy = new EgressProxy({
      sandboxId: 'sbx-test',
      audit,
      localAddresses: () => [],
      ...options,
      connect: (address, port) => {
        dials.push(`${address}:${port}`)
        return connect({host: address, port})
      },
    })
    const listener = createNetServer({allowHalfOpen: true})
    proxy.listen(listener)
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    return new ProxyUnderTest(proxy, listener, audit, (listener.address() as AddressInfo).port, dials)
  }

  async client(): Promise<WireClient> {
    const wire = await WireClient.connect(this.port)
    this.clients.push(wire)
    return wire
  }

  /** Every audit line, once every attempt has ended (the proxy is closed). */
  async events(): Promise<AuditEvent[]> {
    await this.proxy.close()
    await this.audit.flush()
    const events: AuditEvent[] = []
    for await (const event of readAudit(this.audit.path)) events.push(event)
    return events
  }

  async close(): Promise<void> {
    for (const client of this.clients.splice(0)) client.close()
    await this.proxy.close()
    await new Promise<void>((resolve) => this.listener.close(() => resolve()))
    await this.audit.close()
  }
}
