import {createSocket, type Socket as UdpSocket} from 'node:dgram'
import {readFile} from 'node:fs/promises'
import {createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import {createServer as createNetServer, type AddressInfo, type Server as NetServer} from 'node:net'
import {join, normalize} from 'node:path'
import type {TLSSocket} from 'node:tls'

export interface SeenRequest {
  readonly method: string
  readonly url: string
  readonly host: string | undefined
}

/**
 * A server on the host that records every TCP connection it accepts, before
 * anything is read from it, so a test can assert that nothing reached it.
 * HTTP (or HTTPS) answers `hello from <name>`, or serves files from `root`.
 */
export class RecordingTarget {
  /** The remote address of every TCP connection accepted. */
  readonly connections: string[] = []
  /** The server name (SNI) of every TLS handshake, for a TLS target. */
  readonly servernames: string[] = []
  readonly requests: SeenRequest[] = []

  private constructor(
    readonly name: string,
    private readonly server: HttpServer,
    readonly port: number,
  ) {}

  /** Listens on `host` (`::` takes IPv4 too: every address of the host) at a free port. */
  static async http(name: string, host = '127.0.0.1', root?: string): Promise<RecordingTarget> {
    return RecordingTarget.listen(name, createHttpServer(), host, root)
  }

  static async https(name: string, tls: {key: string; cert: string}, root?: string): Promise<RecordingTarget> {
    return RecordingTarget.listen(name, createHttpsServer(tls), '127.0.0.1', root)
  }

  private static async listen(name: string, server: HttpServer, host: string, root: string | undefined): Promise<RecordingTarget> {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({host, port: 0, ipv6Only: false}, resolve)
    })
    const target = new RecordingTarget(name, server, (server.address() as AddressInfo).port)
    // `connection` is the TCP accept: it fires for a TLS server before the handshake.
    server.on('connection', (socket) => target.connections.push(socket.remoteAddress ?? ''))
    server.on('secureConnection', (socket: TLSSocket) => target.servernames.push(typeof socket.servername === 'string' ? socket.servername : ''))
    server.on('request', (request: IncomingMessage, response: ServerResponse) => {
      target.requests.push({method: request.method ?? '', url: request.url ?? '', host: request.headers.host})
      if (root === undefined) {
        response.end(`hello from ${name}: ${request.method} ${request.url}`)
        return
      }
      serveFile(root, request.url ?? '/', response)
    })
    return target
  }

  get touched(): boolean {
    return this.connections.length > 0
  }

  reset(): void {
    this.connections.length = 0
    this.servernames.length = 0
    this.requests.length = 0
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** Dumb-HTTP git needs nothing but the repository's files (after `git update-server-info`). */
function serveFile(root: string, url: string, response: ServerResponse): void {
  const path = normalize(decodeURIComponent(url.split('?')[0] ?? '/'))
  if (path.includes('..')) {
    response.writeHead(400).end()
    return
  }
  readFile(join(root, path)).then(
    (bytes) => response.writeHead(200, {'content-type': 'application/octet-stream'}).end(bytes),
    () => response.writeHead(404).end('not found'),
  )
}

/** A UDP socket on every address of the host (`::`, IPv4 too) that records every datagram. */
export class UdpTarget {
  readonly datagrams: string[] = []

  private constructor(
    private readonly socket: UdpSocket,
    readonly port: number,
  ) {}

  static async start(): Promise<UdpTarget> {
    const socket = createSocket({type: 'udp6', ipv6Only: false})
    await new Promise<void>((resolve) => socket.bind(0, '::', resolve))
    const target = new UdpTarget(socket, socket.address().port)
    socket.on('message', (message, remote) => target.datagrams.push(`${remote.address}: ${message.toString('latin1')}`))
    return target
  }

  reset(): void {
    this.datagrams.length = 0
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.socket.close(() => resolve()))
  }
}

/** A unix socket in the host's abstract namespace (no file: reachable by name from the same network namespace). */
export class AbstractSocketTarget {
  connections = 0

  private constructor(
    private readonly server: NetServer,
    readonly name: string,
  ) {}

  static async start(name: string): Promise<AbstractSocketTarget> {
    const server = createNetServer()
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(`\0${name}`, resolve)
    })
    const target = new AbstractSocketTarget(server, name)
    server.on('connection', (socket) => {
      target.connections++
      socket.destroy()
    })
    return target
  }

  reset(): void {
    this.connections = 0
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
