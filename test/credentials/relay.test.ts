import {expect} from 'chai'
import {type AddressInfo, connect, createServer, type Server, type Socket} from 'node:net'

import {SandboxGateway} from '../../src/credentials/gateway.js'
import {phantomSecret} from '../../src/credentials/phantom.js'
import {BodyTracker, UpstreamProtocolError} from '../../src/credentials/response-framing.js'
import {SecretResolver} from '../../src/credentials/secrets.js'
import {routePhantom, type SandboxCredentialState} from '../../src/credentials/state.js'
import type {AuditEvent} from '../../src/egress/audit.js'
import {dialChecked} from '../../src/egress/dial.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {tempDirs} from '../helpers/tmp.js'

/** An upstream on loopback that answers each request head with what `answer` says, written as given (one write per piece). */
class ScriptedUpstream {
  readonly heads: {connection: number; head: string}[] = []
  private connections = 0
  private readonly sockets = new Set<Socket>()
  /** The pieces of the answer to the `index`th request, or a function that writes it itself. */
  answer: (index: number) => (Buffer | string)[] | ((socket: Socket) => void) = () => []
  /** Pause between the pieces of an answer, so that each arrives in its own read. */
  gapMs = 0
  closeAfterAnswer = false

  private constructor(private readonly server: Server) {}

  static async start(): Promise<ScriptedUpstream> {
    const upstream = new ScriptedUpstream(createServer())
    upstream.server.on('connection', (socket) => upstream.serve(socket))
    await new Promise<void>((resolve) => upstream.server.listen(0, '127.0.0.1', resolve))
    return upstream
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }

  private serve(socket: Socket): void {
    const connection = ++this.connections
    this.sockets.add(socket)
    socket.setNoDelay(true)
    socket.on('close', () => this.sockets.delete(socket))
    socket.on('error', () => undefined)
    let pending = ''
    socket.on('data', async (chunk: Buffer) => {
      pending += chunk.toString('latin1')
      for (let end = pending.indexOf('\r\n\r\n'); end !== -1; end = pending.indexOf('\r\n\r\n')) {
        const head = pending.slice(0, end)
        pending = pending.slice(end + 4)
        this.heads.push({connection, head})
        const answer = this.answer(this.heads.length - 1)
        if (typeof answer === 'function') return void answer(socket)
        for (const piece of answer) {
          socket.write(piece)
          if (this.gapMs > 0) await new Promise((resolve) => setTimeout(resolve, this.gapMs))
        }
        if (this.closeAfterAnswer) socket.end()
      }
    })
  }
}

/** A sandbox-side client on a raw connection: sends request heads and reads exactly what the gateway writes. */
class RawClient {
  private received = Buffer.alloc(0)
  closed = false
  private waiters: (() => void)[] = []

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk])
      this.wake()
    })
    socket.on('close', () => {
      this.closed = true
      this.wake()
    })
    socket.on('error', () => undefined)
  }

  static async open(port: number): Promise<RawClient> {
    const socket = connect(port, '127.0.0.1')
    await new Promise((resolve) => socket.once('connect', resolve))
    return new RawClient(socket)
  }

  send(path: string, phantom: string, version = '1.1'): void {
    this.socket.write(`GET /upstream${path} HTTP/${version}\r\nHost: 127.0.0.1\r\nX-Api-Key: ${phantom}\r\n\r\n`)
  }

  /** Everything received until `done` holds of it or the connection closed (then the rest is taken). */
  async take(done: (text: string) => boolean): Promise<string> {
    while (!done(this.received.toString('latin1')) && !this.closed) await new Promise<void>((resolve) => this.waiters.push(resolve))
    const text = this.received.toString('latin1')
    this.received = Buffer.alloc(0)
    return text
  }

  /** Waits for the connection to close, or at most `ms`. */
  async closedWithin(ms: number): Promise<boolean> {
    const deadline = Date.now() + ms
    while (!this.closed && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
    return this.closed
  }

  destroy(): void {
    this.socket.destroy()
  }

  private wake(): void {
    for (const waiter of this.waiters.splice(0)) waiter()
  }
}

const endsWith = (tail: string) => (text: string) => text.endsWith(tail)
const bodyOf = (text: string) => text.slice(text.indexOf('\r\n\r\n') + 4)
const headOf = (text: string) => text.slice(0, text.indexOf('\r\n\r\n'))

describe('credential gateway: answers relayed as the upstream framed them', function () {
  this.timeout(30_000)
  const dirs = tempDirs('cleanroom-relay-')
  let upstream: ScriptedUpstream
  let gateway: SandboxGateway
  let listener: Server
  let phantom = ''
  const events: AuditEvent[] = []
  const clients: RawClient[] = []
  const client = async () => {
    const made = await RawClient.open((listener.address() as AddressInfo).port)
    clients.push(made)
    return made
  }

  beforeEach(async () => {
    const dir = await dirs.make()
    upstream = await ScriptedUpstream.start()
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [upstream.port]}], deny: []})
    const state: SandboxCredentialState = {
      write_back: true,
      routes: [{spec: {name: 'upstream', upstream: `http://127.0.0.1:${upstream.port}`, header: 'x-api-key', format: '{}', secret: [{provided: 'real-key', from: 'the test'}], env: {}}, secret: phantomSecret(), active: true}],
      logins: [],
    }
    phantom = routePhantom(state.routes[0]!)
    events.length = 0
    gateway = new SandboxGateway({sandboxId: 'cr_relaytest', sandboxDir: dir, sandboxHome: '/home/cleanroom', stateRoot: dir, audit: {record: (event) => events.push(event)}, secrets: new SecretResolver(), dial: (host, port) => dialChecked(host, port, {policy}), roots: []}, state)
    listener = createServer((socket) => gateway.handle(socket))
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  })

  afterEach(async () => {
    for (const made of clients.splice(0)) made.destroy()
    await gateway?.close()
    await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()))
    await upstream?.close()
    await dirs.cleanup()
  })

  it('passes chunk extensions and trailers on byte for byte, and keeps both connections alive for the next request', async () => {
    const body = '5;name=value;q="a b"\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: abc\r\n\r\n'
    upstream.answer = (index) => [`HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\nX-Request: ${index}\r\n\r\n`, body]
    const sandbox = await client()
    sandbox.send('/first', phantom)
    const first = await sandbox.take(endsWith('X-Checksum: abc\r\n\r\n'))
    expect(headOf(first)).to.match(/^HTTP\/1\.1 200 OK\r\n/).and.match(/\r\nTransfer-Encoding: chunked(\r\n|$)/).and.match(/\r\nX-Request: 0(\r\n|$)/)
    expect(bodyOf(first)).to.equal(body)
    sandbox.send('/second', phantom)
    const second = await sandbox.take(endsWith('X-Checksum: abc\r\n\r\n'))
    expect(bodyOf(second)).to.equal(body)
    expect(upstream.heads.map((seen) => seen.connection)).to.deep.equal([1, 1])
    expect(upstream.heads[0]!.head).to.match(/\r\nx-api-key: real-key(\r\n|$)/i)
    expect(events.map((event) => event.bytes_down)).to.deep.equal([12, 12])
  })

  it('follows a chunked body split at every byte boundary', async () => {
    const body = 'a;ext=1\r\n0123456789\r\n3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n'
    for (let split = 1; split < body.length; split++) {
      const tracker = new BodyTracker({kind: 'chunked'})
      const first = tracker.feed(Buffer.from(body.slice(0, split)), true)
      const second = tracker.feed(Buffer.from(`${body.slice(split)}EXTRA`), true)
      expect(first.framed + second.framed, `split at ${split}`).to.equal(body.length)
      expect(Buffer.concat([...first.payload, ...second.payload]).toString()).to.equal('0123456789abc')
      expect(second.ended).to.equal(true)
    }
    upstream.gapMs = 2
    upstream.answer = () => ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', ...body]
    const sandbox = await client()
    sandbox.send('/bytes', phantom)
    expect(bodyOf(await sandbox.take(endsWith('X-T: 1\r\n\r\n')))).to.equal(body)
  })

  it('relays a Content-Length body and ends it at its length', async () => {
    upstream.answer = () => ['HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello', ' world']
    const sandbox = await client()
    sandbox.send('/length', phantom)
    const answer = await sandbox.take(endsWith('hello world'))
    expect(headOf(answer)).to.match(/\r\nContent-Length: 11(\r\n|$)/)
    expect(bodyOf(answer)).to.equal('hello world')
    sandbox.send('/again', phantom)
    expect(bodyOf(await sandbox.take(endsWith('hello world')))).to.equal('hello world')
    expect(upstream.heads.map((seen) => seen.connection)).to.deep.equal([1, 1])
  })

  it('closes the sandbox connection when the body is cut short, without a word more', async () => {
    upstream.closeAfterAnswer = true
    upstream.answer = (index) => (index === 0 ? ['HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b'] : ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel'])
    for (const cut of ['only ten b', '5\r\nhel']) {
      const sandbox = await client()
      sandbox.send('/cut', phantom)
      const answer = await sandbox.take(() => false)
      expect(sandbox.closed).to.equal(true)
      expect(bodyOf(answer)).to.equal(cut)
    }
    expect(events.map((event) => event.error)).to.deep.equal(['ECONNRESET', 'ECONNRESET'])
  })

  it('refuses an answer with both Transfer-Encoding and Content-Length, and the sandbox connection goes on', async () => {
    upstream.answer = (index) => (index === 0 ? ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n'] : ['HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'])
    const sandbox = await client()
    sandbox.send('/both', phantom)
    const refused = await sandbox.take((text) => text.includes('\r\n\r\n') && text.endsWith('}'))
    expect(headOf(refused)).to.match(/^HTTP\/1\.1 502 /)
    expect(bodyOf(refused)).to.include('both Transfer-Encoding and Content-Length')
    sandbox.send('/next', phantom)
    expect(bodyOf(await sandbox.take(endsWith('ok')))).to.equal('ok')
    expect(upstream.heads.map((seen) => seen.connection)).to.deep.equal([1, 2])
  })

  it('drops what an upstream sends after the body ends: a smuggled second answer never reaches the sandbox', async () => {
    const smuggled = 'HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\nsmuggled'
    upstream.answer = (index) => (index === 0 ? [`HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello${smuggled}`] : ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nreal\r\n0\r\n\r\n'])
    const sandbox = await client()
    sandbox.send('/first', phantom)
    expect(bodyOf(await sandbox.take(endsWith('hello')))).to.equal('hello')
    sandbox.send('/second', phantom)
    const second = await sandbox.take(endsWith('0\r\n\r\n'))
    expect(second).to.not.include('smuggled')
    expect(bodyOf(second)).to.equal('4\r\nreal\r\n0\r\n\r\n')
    expect(upstream.heads.map((seen) => seen.connection)).to.deep.equal([1, 2])
  })

  it('passes no interim answer on, and decodes a chunked body for an HTTP/1.0 client', async () => {
    upstream.answer = (index) => (index === 0 ? ['HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok'] : ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nX-T: 1\r\n\r\n'])
    const sandbox = await client()
    sandbox.send('/interim', phantom)
    const answer = await sandbox.take(endsWith('ok'))
    expect(answer).to.match(/^HTTP\/1\.1 200 OK\r\n/).and.not.include('103')
    const old = await client()
    old.send('/old', phantom, '1.0')
    const decoded = await old.take(() => false)
    expect(old.closed).to.equal(true)
    expect(headOf(decoded)).to.not.match(/transfer-encoding/i)
    expect(bodyOf(decoded)).to.equal('hello')
  })

  it('stops reading the upstream while the sandbox does not read: what is in flight stays bounded', async () => {
    const total = 256 * 1024 * 1024
    const piece = Buffer.alloc(1024 * 1024, 'x')
    let written = 0
    upstream.answer = () => (socket) => {
      socket.write(`HTTP/1.1 200 OK\r\nContent-Length: ${total}\r\n\r\n`)
      const pump = () => {
        while (written < total) {
          written += piece.length
          if (!socket.write(piece)) return void socket.once('drain', pump)
        }
      }
      pump()
    }
    const socket = connect((listener.address() as AddressInfo).port, '127.0.0.1')
    socket.on('error', () => undefined)
    socket.pause()
    try {
      socket.write(`GET /upstream/big HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Api-Key: ${phantom}\r\n\r\n`)
      await new Promise((resolve) => setTimeout(resolve, 1500))
      // Socket buffers on both loopback legs hold a few MiB each; the gateway adds at most 1 MiB of its own.
      expect(written, 'bytes the upstream got rid of while nobody read').to.be.above(0).and.below(64 * 1024 * 1024)
    } finally {
      socket.destroy()
    }
  })

  it('ends the sandbox connection at a malformed chunk instead of passing it on', async () => {
    const malformed = ['5\r\nhelloXX', 'zz\r\nhello\r\n', '5\n\nhello\r\n', '5;bad ext\r\nhello\r\n', '0\r\nbad trailer\r\n\r\n']
    upstream.gapMs = 20
    upstream.answer = (index) => ['HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n', '3\r\nok!\r\n', malformed[index]!]
    for (const bad of malformed) {
      const sandbox = await client()
      sandbox.send('/malformed', phantom)
      const answer = await sandbox.take(() => false)
      expect(sandbox.closed, bad).to.equal(true)
      expect(bodyOf(answer), bad).to.equal('3\r\nok!\r\n')
    }
    expect(() => new BodyTracker({kind: 'chunked'}).feed(Buffer.from('1\r\nab'), false)).to.throw(UpstreamProtocolError)
  })
})
