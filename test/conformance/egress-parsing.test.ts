import {expect} from 'chai'
import {copyFile, mkdir} from 'node:fs/promises'
import {type AddressInfo, createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {AuditEvent} from '../../src/egress/audit.js'
import {DEFAULT_HEAD_TIMEOUT_MS} from '../../src/egress/proxy.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {mapResolver, type RuleInput} from '../egress/fixtures.js'
import {sandboxPids, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {BACKENDS, requireBackend} from './backends.js'
import {connectHead, expectRefusal, leftoverSandboxes, type Probe, type ProbeResult, proxyAnswer, SandboxUnderTest, via} from './sandbox.js'
import {RecordingTarget, UdpTarget} from './targets.js'

/**
 * The egress conformance suite's protocol attacks: what a hostile workload
 * sends the sandbox's own proxy port to make it open something it did not
 * decide (SOCKS4, SOCKS5 BIND and UDP ASSOCIATE, request smuggling), or to
 * crash or stall it (NUL bytes, oversized and slow heads). Each is refused,
 * audited once, and reaches no target.
 */

const PROBE_SOURCE = fileURLToPath(new URL('sandbox-probe.mjs', import.meta.url))

/** The proxy's head timeout: the slow-head attack lasts that long. */
const HEAD_TIMEOUT_S = DEFAULT_HEAD_TIMEOUT_MS / 1000

/** A raw conversation with the proxy: `steps` as sandbox-probe.mjs's proxy mode takes them. */
const steps = (list: Array<Record<string, unknown>>, timeoutMs = 5000): Probe => ({mode: 'proxy', args: {steps: list, timeoutMs}})

/** Bytes as the latin1 text the probe sends. */
const bytes = (...parts: Array<number[] | string>): string => parts.map((part) => (typeof part === 'string' ? part : Buffer.from(part).toString('latin1'))).join('')

const port16 = (port: number): number[] => [port >> 8, port & 0xff]

/** A SOCKS4 request (CONNECT 1, BIND 2) with a user id; with `name`, SOCKS4a (address 0.0.0.7, the name after the user id). */
function socks4(command: number, port: number, address: number[] | string): string {
  if (typeof address === 'string') return bytes([4, command, ...port16(port), 0, 0, 0, 7], 'mallory\0', `${address}\0`)
  return bytes([4, command, ...port16(port), ...address], 'mallory\0')
}

/** A SOCKS5 greeting (no authentication) and a request with `command` for an IPv4 address. */
const socks5 = (command: number, address: number[], port: number): string => bytes([5, 1, 0], [5, command, 0, 1, ...address, ...port16(port)])

/** SOCKS4's "request rejected or failed", and SOCKS5's "no authentication" followed by a reply with an all-zero address. */
const SOCKS4_REJECTED = bytes([0, 0x5b, 0, 0, 0, 0, 0, 0])
const socks5Reply = (code: number): string => bytes([5, 0], [5, code, 0, 1, 0, 0, 0, 0, 0, 0])

/**
 * A TCP server that records every byte each connection brings, as sent: an
 * HTTP server would stop reading after a `Connection: close` request, hiding
 * what a proxy wrote behind it. It answers once a head has arrived, and hangs
 * up a moment later, once whatever came with the head has arrived too.
 */
class RawTarget {
  /** What each connection sent, in latin1. */
  readonly received: string[] = []

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<RawTarget> {
    const server = createServer()
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const target = new RawTarget(server, (server.address() as AddressInfo).port)
    server.on('connection', (socket) => {
      const index = target.received.push('') - 1
      socket.on('error', () => undefined)
      socket.on('data', (chunk: Buffer) => {
        const before = target.received[index]!
        target.received[index] = before + chunk.toString('latin1')
        if (before.includes('\r\n\r\n') || !target.received[index]!.includes('\r\n\r\n')) return
        socket.write('HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nraw hello')
        setTimeout(() => socket.end(), 300)
      })
    })
    return target
  }

  reset(): void {
    this.received.length = 0
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

const policyOf = (allow: RuleInput[], deny: RuleInput[] = []) => recompilePolicy({version: 1, network_default: 'deny', allow, deny})

for (const backend of BACKENDS) {
  describe(`egress conformance: protocol attacks (${backend})`, function () {
    this.timeout(HEAD_TIMEOUT_S * 1000 + 30_000)
    const dirs = tempDirs('cleanroom-conf-parse-')
    let dir = ''
    let bwrapBefore = new Set<number>()
    let test: TestDaemon | undefined
    let allowedWeb: RecordingTarget
    let deniedWeb: RecordingTarget
    let udp: UdpTarget
    let raw: RawTarget
    const targets: Array<{close(): Promise<void>}> = []
    let main: SandboxUnderTest
    let peer: SandboxUnderTest
    const client = () => test!.client

    /** Asserts no target got a connection or a datagram since the test began (a proxy that dialled would do it at once). */
    async function expectUntouched(): Promise<void> {
      await new Promise((resolve) => setTimeout(resolve, 100))
      expect(allowedWeb.connections, 'connections that reached the allowed server').to.deep.equal([])
      expect(deniedWeb.connections, 'connections that reached the denied server').to.deep.equal([])
      expect(udp.datagrams, 'datagrams that reached the host').to.deep.equal([])
    }

    /** The audit lines since the mark are exactly `expected` (one per attempt), in any order. */
    async function expectAuditOnce(sandbox: SandboxUnderTest, expected: Array<Partial<AuditEvent>>): Promise<AuditEvent[]> {
      const found = await sandbox.expectAudit(expected)
      expect(await sandbox.auditSinceMark(), 'audit lines, one per attempt').to.have.length(expected.length)
      return found
    }

    before(async function () {
      this.timeout(30_000)
      await requireBackend(backend)
      bwrapBefore = await sandboxPids()
      dir = await dirs.make()
      const workspace = join(dir, 'workspace')
      await mkdir(workspace)
      await copyFile(PROBE_SOURCE, join(workspace, 'sandbox-probe.mjs'))
      allowedWeb = await RecordingTarget.http('allowed')
      deniedWeb = await RecordingTarget.http('denied')
      udp = await UdpTarget.start()
      raw = await RawTarget.start()
      targets.push(allowedWeb, deniedWeb, udp, raw)
      const loopback = ['127.0.0.1']
      test = await startTestDaemon(join(dir, 'daemon'), mapResolver({'allowed.test': loopback, 'denied.test': loopback}))
      const A = allowedWeb.port
      const policy = policyOf([{host: 'allowed.test', ports: [A, raw.port, udp.port]}, {host: '127.0.0.1', ports: [A, raw.port, udp.port]}], [{host: 'denied.test'}])
      const create = async () => new SandboxUnderTest(client, (await client().createSandbox({backend, policy, workspace_source: workspace})).sandbox_id)
      main = await create()
      peer = await create()
    })

    after(async function () {
      this.timeout(30_000)
      const failures: unknown[] = []
      const attempt = async (step: () => Promise<unknown>) => step().catch((error: unknown) => failures.push(error))
      await attempt(async () => test?.daemon.close({shutdownSandboxes: true}))
      for (const target of targets.splice(0)) await attempt(() => target.close())
      await attempt(async () => expect(await leftoverSandboxes(bwrapBefore, dir), 'bwrap processes of this suite still running').to.deep.equal([]))
      await attempt(() => dirs.cleanup())
      if (failures.length > 0) throw failures[0]
    })

    beforeEach(async () => {
      for (const target of [allowedWeb, deniedWeb, udp, raw]) target.reset()
      for (const sandbox of [main, peer]) await sandbox.markAudit()
    })

    it('35 SOCKS4 and SOCKS4a, CONNECT and BIND, to allowed and denied destinations are rejected without a dial', async () => {
      const A = allowedWeb.port
      const D = deniedWeb.port
      const results = await main.probe([
        via.raw(socks4(1, A, [127, 0, 0, 1])),
        via.raw(socks4(1, D, [127, 0, 0, 1])),
        via.raw(socks4(2, A, [127, 0, 0, 1])),
        via.raw(socks4(1, A, 'allowed.test')),
        via.raw(socks4(1, D, 'denied.test')),
        via.raw(socks4(2, A, 'allowed.test')),
        // A SOCKS4 CONNECT with the tunnel's first bytes already behind it.
        via.raw(`${socks4(1, A, [127, 0, 0, 1])}GET / HTTP/1.1\r\nHost: allowed.test\r\n\r\n`),
      ])
      for (const result of results) expect(result.received, JSON.stringify(result)).to.equal(SOCKS4_REJECTED)
      const refused = (host: string, port: number) => ({host, port, action: 'deny' as const, reason: 'unsupported_request' as const, protocol: 'socks4' as const})
      const events = await expectAuditOnce(main, [
        refused('127.0.0.1', A),
        refused('127.0.0.1', D),
        refused('127.0.0.1', A),
        refused('allowed.test', A),
        refused('denied.test', D),
        refused('allowed.test', A),
        refused('127.0.0.1', A),
      ])
      expect(events.map((event) => event.error)).to.include('SOCKS4a BIND is not supported: the proxy speaks SOCKS5 (ALL_PROXY names it)')
      await expectUntouched()
    })

    it('36 SOCKS5 BIND and UDP ASSOCIATE, even to allowed destinations, get "command not supported" and open nothing', async () => {
      const A = allowedWeb.port
      const results = await main.probe([
        via.raw(socks5(2, [127, 0, 0, 1], A)),
        via.raw(socks5(3, [127, 0, 0, 1], udp.port)),
        // The usual UDP ASSOCIATE: "any address, any port", then a datagram for the relay it never got.
        via.raw(`${socks5(3, [0, 0, 0, 0], 0)}${bytes([0, 0, 0, 1, 127, 0, 0, 1, ...port16(udp.port)], 'payload')}`),
        {mode: 'udp', args: {host: '127.0.0.1', port: 3128, connect: true}},
      ])
      for (const result of results.slice(0, 3)) expect(result.received, JSON.stringify(result)).to.equal(socks5Reply(0x07))
      // Nothing listens for UDP on the proxy's port: the kernel answers port unreachable.
      expect([results[3]!.second, ...(results[3]!.errors ?? [])], JSON.stringify(results[3])).to.include('ECONNREFUSED')
      await expectAuditOnce(main, [
        {host: '127.0.0.1', port: A, reason: 'unsupported_request', protocol: 'socks5', error: 'SOCKS5 BIND is not supported (only CONNECT)'},
        {host: '127.0.0.1', port: udp.port, reason: 'unsupported_request', protocol: 'socks5', error: 'SOCKS5 UDP ASSOCIATE is not supported (only CONNECT)'},
        {host: '0.0.0.0', port: 0, reason: 'unsupported_request', protocol: 'socks5'},
      ])
      await expectUntouched()
    })

    it('37 request smuggling: a head that frames its body two ways is refused before any dial', async () => {
      const A = allowedWeb.port
      const D = deniedWeb.port
      const smuggled = `GET http://denied.test:${D}/smuggled HTTP/1.1\r\nHost: denied.test:${D}\r\n\r\n`
      const post = (headers: string, body = `0\r\n\r\n${smuggled}`) => via.raw(`POST http://allowed.test:${A}/ HTTP/1.1\r\nHost: allowed.test:${A}\r\n${headers}\r\n${body}`)
      const ambiguous = [
        `Content-Length: 5\r\nTransfer-Encoding: chunked\r\n`,
        `Transfer-Encoding: chunked\r\nContent-Length: ${5 + smuggled.length}\r\n`,
        `Content-Length: 0\r\nContent-Length: ${smuggled.length}\r\n`,
        'Transfer-Encoding: chunked, identity\r\n',
        'Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n',
        'Transfer-Encoding: xchunked\r\n',
        `Transfer-Encoding:  chunked\r\nContent-Length: 5\r\n`,
        'Transfer_Encoding: chunked\r\n',
      ]
      const malformed = ['Transfer-Encoding : chunked\r\n', 'X-Padding: 1\r\n Transfer-Encoding: chunked\r\n', 'Transfer-Encoding:\r\n chunked\r\n', 'Transfer-Encoding: chunked\n']
      const results = await main.probe([...ambiguous.map((headers) => post(headers)), ...malformed.map((headers) => post(headers))])
      results.slice(0, ambiguous.length).forEach((result, index) => expectRefusal(result, 400, 'ambiguous_body_length', JSON.stringify(ambiguous[index])))
      results.slice(ambiguous.length).forEach((result, index) => expectRefusal(result, 400, 'malformed_request', JSON.stringify(malformed[index])))
      const events = await main.auditSinceMark()
      expect(events.map((event) => event.reason).sort()).to.deep.equal([...ambiguous.map(() => 'ambiguous_body_length'), ...malformed.map(() => 'malformed_request')].sort())
      await expectUntouched()
    })

    it('38 a request pipelined behind the body, or a CONNECT behind a GET, is never sent on: the origin gets the first request only', async () => {
      const R = raw.port
      const D = deniedWeb.port
      const smuggled = `GET http://denied.test:${D}/smuggled HTTP/1.1\r\nHost: denied.test:${D}\r\n\r\n`
      const results = await main.probe([
        via.raw(`POST http://allowed.test:${R}/length HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello${smuggled}`),
        via.raw(`POST http://allowed.test:${R}/chunked HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n${smuggled}`),
        via.raw(`GET http://allowed.test:${R}/get HTTP/1.1\r\nConnection: keep-alive\r\n\r\n${connectHead(`denied.test:${D}`)}${smuggled}`),
        // Origin-form behind an allowed request: what an origin that is itself a proxy would route by its Host.
        via.raw(`GET http://allowed.test:${R}/then-origin HTTP/1.1\r\n\r\nGET /x HTTP/1.1\r\nHost: denied.test:${D}\r\n\r\n`),
      ])
      for (const result of results) expect(proxyAnswer(result).body).to.equal('raw hello')
      const host = `Host: allowed.test:${R}\r\n`
      expect([...raw.received].sort()).to.deep.equal(
        [
          `POST /length HTTP/1.1\r\n${host}Content-Length: 5\r\nConnection: close\r\n\r\nhello`,
          `POST /chunked HTTP/1.1\r\n${host}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n`,
          `GET /get HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
          `GET /then-origin HTTP/1.1\r\n${host}Connection: close\r\n\r\n`,
        ].sort(),
      )
      const events = await expectAuditOnce(main, results.map(() => ({host: 'allowed.test', port: R, action: 'allow', protocol: 'http'})))
      expect(events.filter((event) => event.host === 'denied.test')).to.deep.equal([])
      await expectUntouched()
    })

    it('39 NUL bytes in the request line, a header name or value, the Host, or as the first byte are refused', async () => {
      const A = allowedWeb.port
      const heads = [
        `GET http://allowed.test:${A}/\0 HTTP/1.1\r\n\r\n`,
        `GET\0 http://allowed.test:${A}/ HTTP/1.1\r\n\r\n`,
        `CONNECT allowed.test\0.denied.test:${A} HTTP/1.1\r\n\r\n`,
        `GET http://allowed.test:${A}/ HTTP/1.1\r\nX-\0: 1\r\n\r\n`,
        `GET http://allowed.test:${A}/ HTTP/1.1\r\nX-Value: a\0b\r\n\r\n`,
        `GET http://allowed.test:${A}/ HTTP/1.1\r\nHost: allowed.test\0.denied.test:${A}\r\n\r\n`,
        `\0GET http://allowed.test:${A}/ HTTP/1.1\r\n\r\n`,
      ]
      const results = await main.probe(heads.map((head) => via.raw(head)))
      results.forEach((result, index) => expectRefusal(result, 400, 'malformed_request', JSON.stringify(heads[index])))
      await expectAuditOnce(main, heads.map(() => ({action: 'deny', reason: 'malformed_request'})))
      await expectUntouched()
    })

    it('40 oversized heads: 64 KiB, a 16 KiB header line, 10,000 headers, a 255-byte SOCKS5 name each get their answer', async () => {
      const A = allowedWeb.port
      const get = `GET http://allowed.test:${A}/ HTTP/1.1\r\n`
      const longName = Array.from({length: 4}, () => 'a'.repeat(63)).join('.')
      const results = await main.probe([
        steps([{send: get}, {send: 'X-Padding: 1\r\n', times: 5000}, {send: '\r\n'}]),
        steps([{send: `${get}X-Long: `}, {send: 'x', times: 17 * 1024}, {send: '\r\n\r\n'}]),
        steps([{send: get}, {send: 'a:1\r\n', times: 10_000}, {send: '\r\n'}]),
        via.raw(bytes([5, 1, 0], [5, 1, 0, 3, 255], longName, [...port16(A)])),
      ])
      expectRefusal(results[0]!, 431, 'head_too_large', '64 KiB head')
      expectRefusal(results[1]!, 431, 'header_too_large', '17 KiB header line')
      expectRefusal(results[2]!, 431, 'too_many_headers', '10,000 headers')
      expect(results[3]!.received).to.equal(socks5Reply(0x02))
      await expectAuditOnce(main, [
        {reason: 'head_too_large'},
        {reason: 'header_too_large'},
        {reason: 'too_many_headers'},
        {host: longName, port: A, reason: 'invalid_host', protocol: 'socks5'},
      ])
      await expectUntouched()
      // The proxy still serves.
      expect(proxyAnswer(await main.probeOne(via.get(`http://allowed.test:${A}/after`))).body).to.equal('hello from allowed: GET /after')
    })

    it(`41 a head sent one byte a second, and a SOCKS5 name shorter than it claims, are cut off at the ${HEAD_TIMEOUT_S} s head timeout; other sandboxes are served meanwhile`, async () => {
      const A = allowedWeb.port
      const head = `GET http://allowed.test:${A}/slow HTTP/1.1\r\nHost: allowed.test:${A}\r\n`
      const drip = [...head.repeat(2)].flatMap((byte) => [{send: byte}, {waitMs: 1000}])
      const started = Date.now()
      const slow = main.probe([steps(drip, (HEAD_TIMEOUT_S + 15) * 1000)])
      const short = main.probe([steps([{send: bytes([5, 1, 0], [5, 1, 0, 3, 200], 'allowed.test')}], (HEAD_TIMEOUT_S + 15) * 1000)])
      // While both wait: the peer sandbox, and the same sandbox on another connection, are served.
      await new Promise((resolve) => setTimeout(resolve, 2000))
      const [fromPeer] = await peer.probe([via.get(`http://allowed.test:${A}/peer`)])
      const [fromMain] = await main.probe([via.get(`http://allowed.test:${A}/meanwhile`)])
      expect([proxyAnswer(fromPeer!).body, proxyAnswer(fromMain!).body]).to.deep.equal(['hello from allowed: GET /peer', 'hello from allowed: GET /meanwhile'])
      const [[slowResult], [shortResult]] = (await Promise.all([slow, short])) as [ProbeResult[], ProbeResult[]]
      const elapsed = (Date.now() - started) / 1000
      expectRefusal(slowResult!, 408, 'head_timeout', 'one byte a second')
      expect(shortResult!.received).to.equal(socks5Reply(0x01))
      expect(elapsed, 'seconds until the proxy cut them off').to.be.within(HEAD_TIMEOUT_S - 1, HEAD_TIMEOUT_S + 10)
      await expectAuditOnce(main, [
        {reason: 'head_timeout', protocol: 'http'},
        {reason: 'head_timeout', protocol: 'socks5'},
        {host: 'allowed.test', port: A, action: 'allow'},
      ])
      expect(allowedWeb.requests.map((request) => request.url)).to.deep.equal(['/peer', '/meanwhile'])
    })
  })
}
