import {expect} from 'chai'
import {connect, createServer, type Server} from 'node:net'
import {networkInterfaces} from 'node:os'
import {join} from 'node:path'

import {type AuditEvent, AuditLog, readAudit} from '../../src/egress/audit.js'
import {type Dialer, EgressProxy, type EgressProxyOptions} from '../../src/egress/proxy.js'
import {tempDirs} from '../helpers/tmp.js'
import {mapResolver, parseResponse, policyOf, RecordingServer, type RuleInput, WireClient} from './fixtures.js'

const SANDBOX_ID = 'sbx-test'

describe('egress proxy', () => {
  const dirs = tempDirs('cleanroom-egress-')
  let target: RecordingServer
  let listener: Server
  let proxy: EgressProxy
  let audit: AuditLog
  let dials: string[]
  const clients: WireClient[] = []

  beforeEach(async () => {
    target = await RecordingServer.start('target')
    audit = await AuditLog.open(join(await dirs.make(), 'egress.jsonl'))
    dials = []
  })

  afterEach(async () => {
    for (const client of clients.splice(0)) client.close()
    await proxy?.close()
    await new Promise<void>((resolve) => (listener ? listener.close(() => resolve()) : resolve()))
    await target.close()
    await audit.close()
    await dirs.cleanup()
  })

  /** Starts a proxy on 127.0.0.1 for `rules`; `names` is the DNS the proxy sees, and every dial is recorded. */
  async function startProxy(
    rules: {allow?: RuleInput[]; deny?: RuleInput[]},
    options: {names?: Record<string, string[]>; allowAll?: boolean; realInterfaces?: boolean} = {},
  ): Promise<number> {
    const recordingDialer: Dialer = (address, port) => {
      dials.push(`${address}:${port}`)
      return connect({host: address, port})
    }
    const proxyOptions: EgressProxyOptions = {
      sandboxId: SANDBOX_ID,
      policy: policyOf(rules),
      allowAll: options.allowAll,
      audit,
      resolver: mapResolver(options.names ?? {}),
      connect: recordingDialer,
      ...(!options.realInterfaces && {localAddresses: () => []}),
    }
    proxy = new EgressProxy(proxyOptions)
    listener = createServer({allowHalfOpen: true})
    proxy.listen(listener)
    await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
    const address = listener.address()
    if (address === null || typeof address === 'string') throw new Error('the proxy listener has no TCP address')
    return address.port
  }

  async function client(port: number): Promise<WireClient> {
    const wire = await WireClient.connect(port)
    clients.push(wire)
    return wire
  }

  /** The audit lines once every attempt has ended. */
  async function auditEvents(): Promise<AuditEvent[]> {
    await proxy.close()
    await audit.flush()
    const events: AuditEvent[] = []
    for await (const one of readAudit(audit.path)) events.push(one)
    return events
  }

  /** The one audit line of a test that made one attempt. */
  async function onlyEvent(): Promise<AuditEvent> {
    const events = await auditEvents()
    expect(events).to.have.length(1)
    return events[0] as AuditEvent
  }

  function get(path: string, host: string, extra = ''): string {
    return `GET ${path} HTTP/1.1\r\nHost: ${host}\r\n${extra}Connection: close\r\n\r\n`
  }

  /** Sends CONNECT and returns the proxy's answer head. */
  async function connectThrough(wire: WireClient, authority: string): Promise<string> {
    wire.send(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`)
    return wire.takeThrough('\r\n\r\n')
  }

  /** A CONNECT the proxy is expected to answer with an error: the whole answer, parsed. */
  async function refusedConnect(port: number, authority: string): Promise<ReturnType<typeof parseResponse>> {
    const wire = await client(port)
    return parseResponse((await connectThrough(wire, authority)) + (await wire.rest()))
  }

  function expectNothingReachedTarget(): void {
    expect(target.connections, 'connections the target accepted').to.equal(0)
    expect(dials, 'addresses the proxy dialled').to.deep.equal([])
  }

  describe('HTTP CONNECT', () => {
    it('tunnels to an address an IP rule allows, and audits the bytes both ways', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1/32', ports: [target.port]}]})
      const wire = await client(port)
      expect(await connectThrough(wire, `127.0.0.1:${target.port}`)).to.equal('HTTP/1.1 200 Connection Established\r\n\r\n')
      const request = get('/through-the-tunnel', `127.0.0.1:${target.port}`)
      wire.send(request)
      const response = await wire.rest()
      expect(parseResponse(response).body).to.equal('hello from target: GET /through-the-tunnel')
      expect(target.connections).to.equal(1)

      const [line, ...more] = await auditEvents()
      expect(more).to.deep.equal([])
      expect(line).to.deep.include({
        sandbox_id: SANDBOX_ID,
        host: '127.0.0.1',
        port: target.port,
        resolved_ip: '127.0.0.1',
        action: 'allow',
        reason: 'allowed_by_rule',
        rule: '127.0.0.1',
        protocol: 'connect',
        bytes_up: Buffer.byteLength(request),
        bytes_down: Buffer.byteLength(response),
      })
      expect(Date.parse(line?.time ?? '')).to.be.closeTo(Date.now(), 60_000)
      expect(line?.duration_ms).to.be.a('number').and.at.least(0)
    })

    it('tunnels to a name the proxy resolves, dialling the checked address', async () => {
      const port = await startProxy(
        {allow: [{host: 'allowed.test', ports: [target.port]}, {host: '127.0.0.1', ports: [target.port]}]},
        {names: {'allowed.test': ['127.0.0.1']}},
      )
      const wire = await client(port)
      expect(await connectThrough(wire, `Allowed.TEST.:${target.port}`)).to.match(/^HTTP\/1\.1 200 /)
      wire.send(get('/', `allowed.test:${target.port}`))
      expect(parseResponse(await wire.rest()).body).to.equal('hello from target: GET /')
      expect(dials).to.deep.equal([`127.0.0.1:${target.port}`])
      expect(await onlyEvent()).to.deep.include({host: 'allowed.test', resolved_ip: '127.0.0.1', reason: 'allowed_by_rule'})
    })

    it('refuses a denied host with 403, the reason header and a one-line fix', async () => {
      const port = await startProxy({allow: [{host: 'allowed.test', ports: [443]}]}, {names: {'denied.test': ['127.0.0.1']}})
      const response = await refusedConnect(port, `denied.test:${target.port}`)
      expect(response.status).to.equal(403)
      expect(response.headers.get('x-cleanroom-reason')).to.equal('host_not_allowed')
      expect(response.body).to.equal(
        `host_not_allowed: denied.test:${target.port} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`,
      )
      expectNothingReachedTarget()
    })

    it('writes a denial to the audit log at once', async () => {
      const port = await startProxy({})
      const wire = await client(port)
      await connectThrough(wire, 'denied.test:443')
      await audit.flush()
      const events: AuditEvent[] = []
      for await (const one of readAudit(audit.path)) events.push(one)
      expect(events).to.have.length(1)
      expect(events[0]).to.deep.include({host: 'denied.test', port: 443, resolved_ip: null, action: 'deny', reason: 'host_not_allowed', bytes_up: 0, bytes_down: 0, protocol: 'connect'})
    })

    it('refuses an allowed host on a port its rule does not list', async () => {
      const port = await startProxy({allow: [{host: 'allowed.test', ports: [443]}, {host: '127.0.0.1', ports: [target.port]}]}, {names: {'allowed.test': ['127.0.0.1']}})
      const response = await refusedConnect(port, `allowed.test:${target.port}`)
      // The program is told the destination is not allowed; the audit log keeps which part of it.
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([403, 'host_not_allowed'])
      expect(response.body).to.equal(`host_not_allowed: allowed.test:${target.port} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`)
      expectNothingReachedTarget()
    })

    it('refuses upper-case and trailing-dot spellings of a denied host', async () => {
      const port = await startProxy(
        {allow: [{host: '*.example.test', ports: [target.port]}, {host: '127.0.0.1', ports: [target.port]}], deny: [{host: 'evil.example.test'}]},
        {names: {'evil.example.test': ['127.0.0.1']}},
      )
      for (const spelling of ['EVIL.Example.Test', 'evil.example.test.', 'Evil.Example.Test.']) {
        const response = await refusedConnect(port, `${spelling}:${target.port}`)
        expect([response.status, response.headers.get('x-cleanroom-reason')], spelling).to.deep.equal([403, 'denied_by_rule'])
      }
      expectNothingReachedTarget()
    })

    it('refuses decimal, octal and hex spellings of an allowed address', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      for (const spelling of ['2130706433', '0177.0.0.1', '0x7f.1', '0x7f000001', '127.1', '127.000.000.001']) {
        const response = await refusedConnect(port, `${spelling}:${target.port}`)
        expect([response.status, response.headers.get('x-cleanroom-reason')], spelling).to.deep.equal([400, 'invalid_host'])
      }
      expectNothingReachedTarget()
    })

    it('forwards bytes the client sent before the tunnel was established', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      wire.send(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\n\r\n${get('/early', '127.0.0.1')}`)
      const answer = await wire.rest()
      expect(answer).to.match(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK\r\n/)
      expect(parseResponse(answer.slice(answer.indexOf('\r\n\r\n') + 4)).body).to.equal('hello from target: GET /early')
    })

    it('treats an IPv4-mapped IPv6 literal as its IPv4 address', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      expect(await connectThrough(wire, `[::ffff:127.0.0.1]:${target.port}`)).to.match(/^HTTP\/1\.1 200 /)
      wire.send(get('/', `127.0.0.1:${target.port}`))
      expect(parseResponse(await wire.rest()).body).to.equal('hello from target: GET /')
      expect(dials).to.deep.equal([`127.0.0.1:${target.port}`])
    })

    it('refuses a name that resolves to loopback (DNS rebinding)', async () => {
      const port = await startProxy({allow: [{host: 'rebind.test', ports: [target.port]}]}, {names: {'rebind.test': ['127.0.0.1']}})
      const response = await refusedConnect(port, `rebind.test:${target.port}`)
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([403, 'resolves_to_forbidden_address'])
      expect(response.body).to.equal(
        `resolves_to_forbidden_address: rebind.test resolves to 127.0.0.1, a loopback address, which a sandbox may not reach (to reach it anyway, allow 127.0.0.1 on port ${target.port} with an IP rule in sandbox.network.allow in cleanroom.yaml)`,
      )
      expectNothingReachedTarget()
      expect(await onlyEvent()).to.deep.include({resolved_ip: '127.0.0.1', error: 'loopback', action: 'deny'})
    })

    it('refuses loopback, localhost and unspecified literals without an IP rule', async () => {
      const port = await startProxy({allow: [{host: 'localhost', ports: [target.port]}]}, {names: {localhost: ['127.0.0.1', '::1']}, allowAll: true})
      for (const [authority, reason] of [
        [`127.0.0.1:${target.port}`, 'forbidden_address'],
        [`localhost:${target.port}`, 'resolves_to_forbidden_address'],
        [`[::1]:${target.port}`, 'forbidden_address'],
        [`0.0.0.0:${target.port}`, 'forbidden_address'],
      ] as const) {
        const response = await refusedConnect(port, authority)
        expect([response.status, response.headers.get('x-cleanroom-reason')], authority).to.deep.equal([403, reason])
      }
      expectNothingReachedTarget()
    })

    it('refuses cloud metadata addresses even with --dangerously-allow-all', async () => {
      const port = await startProxy({}, {allowAll: true, names: {'metadata.google.internal': ['169.254.169.254']}})
      for (const authority of ['169.254.169.254:80', '[fd00:ec2::254]:80', '100.100.100.200:80', '168.63.129.16:80', 'metadata.google.internal:80']) {
        const response = await refusedConnect(port, authority)
        expect(response.status, authority).to.equal(403)
        expect(response.body, authority).to.include('a cloud metadata address')
      }
      expect(dials).to.deep.equal([])
    })

    it("refuses the host's own interface addresses, even under a CIDR rule that covers them", async () => {
      const own = Object.values(networkInterfaces())
        .flatMap((addresses) => addresses ?? [])
        .find((info) => !info.internal && info.family === 'IPv4')
      if (own === undefined) throw new Error('this test needs a non-loopback IPv4 interface (os.networkInterfaces() lists none)')
      const [a, b] = own.address.split('.')
      const port = await startProxy({allow: [{host: `${a}.${b}.0.0/16`, ports: [target.port]}]}, {realInterfaces: true})
      const response = await refusedConnect(port, `${own.address}:${target.port}`)
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([403, 'forbidden_address'])
      expect(response.body).to.include("one of the host's own addresses")
      expect(dials).to.deep.equal([])
    })

    it('answers 502 when the allowed destination refuses the connection', async () => {
      const closedPort = await unusedPort()
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [closedPort]}]})
      const response = await refusedConnect(port, `127.0.0.1:${closedPort}`)
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([502, 'upstream_failed'])
      expect(response.body).to.equal(`upstream_failed: could not connect to 127.0.0.1:${closedPort} at 127.0.0.1 (ECONNREFUSED)`)
      expect(await onlyEvent()).to.deep.include({action: 'allow', error: 'ECONNREFUSED'})
    })

    it('refuses CONNECT without a port', async () => {
      const port = await startProxy({})
      const response = await refusedConnect(port, 'allowed.test')
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([400, 'malformed_request'])
    })

    it('destroys open tunnels on close() and audits them', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      await connectThrough(wire, `127.0.0.1:${target.port}`)
      const event = await onlyEvent()
      await wire.rest()
      expect(event).to.deep.include({action: 'allow', bytes_up: 0, bytes_down: 0})
    })
  })

  describe('absolute-form HTTP', () => {
    it('forwards in origin-form without hop-by-hop and Proxy-* headers', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      const authority = `127.0.0.1:${target.port}`
      wire.send(
        `POST http://${authority}/submit?x=1 HTTP/1.1\r\nHost: ${authority}\r\nProxy-Authorization: Basic c2VjcmV0\r\nProxy-Connection: keep-alive\r\n` +
          `Connection: keep-alive, X-Hop\r\nX-Hop: drop me\r\nX-Kept: keep me\r\nContent-Length: 5\r\n\r\nhello`,
      )
      const response = parseResponse(await wire.rest())
      expect(response.body).to.equal('hello from target: POST /submit?x=1')
      const [received] = target.requests
      expect(received?.body).to.equal('hello')
      expect(received?.headers).to.include({host: authority, 'x-kept': 'keep me', connection: 'close'})
      expect(Object.keys(received?.headers ?? {})).to.not.include.members(['proxy-authorization', 'proxy-connection', 'x-hop'])
      expect(await onlyEvent()).to.deep.include({protocol: 'http', reason: 'allowed_by_rule'})
    })

    it("relays a client's half-close and still delivers the response", async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      wire.socket.end(`GET http://127.0.0.1:${target.port}/half HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n\r\n`)
      expect(parseResponse(await wire.rest()).body).to.equal('hello from target: GET /half')
    })

    it('refuses a denied host with 403 and the reason', async () => {
      const port = await startProxy({}, {names: {'denied.test': ['127.0.0.1']}})
      const wire = await client(port)
      wire.send(`GET http://denied.test:${target.port}/ HTTP/1.1\r\nHost: denied.test:${target.port}\r\n\r\n`)
      const response = parseResponse(await wire.rest())
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([403, 'host_not_allowed'])
      expect(response.body).to.equal(`host_not_allowed: denied.test:${target.port} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`)
      expectNothingReachedTarget()
    })

    it('refuses a Host header that names another destination', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      wire.send(`GET http://127.0.0.1:${target.port}/ HTTP/1.1\r\nHost: denied.test\r\n\r\n`)
      const response = parseResponse(await wire.rest())
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([400, 'host_mismatch'])
      expectNothingReachedTarget()
    })

    it('refuses https:// URLs, which belong in a CONNECT tunnel', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      wire.send(`GET https://127.0.0.1:${target.port}/ HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n\r\n`)
      const response = parseResponse(await wire.rest())
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([400, 'unsupported_request'])
      expectNothingReachedTarget()
    })
  })

  describe('SOCKS5', () => {
    function socksConnectDomain(host: string, port: number): Buffer {
      const name = Buffer.from(host)
      const portBytes = Buffer.alloc(2)
      portBytes.writeUInt16BE(port)
      return Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, portBytes])
    }

    async function greet(wire: WireClient): Promise<void> {
      wire.send(Buffer.from([5, 1, 0]))
      expect([...(await wire.take(2))]).to.deep.equal([5, 0])
    }

    it('connects to a domain name the proxy resolves (remote DNS)', async () => {
      const port = await startProxy(
        {allow: [{host: 'allowed.test', ports: [target.port]}, {host: '127.0.0.1', ports: [target.port]}]},
        {names: {'allowed.test': ['127.0.0.1']}},
      )
      const wire = await client(port)
      await greet(wire)
      wire.send(socksConnectDomain('allowed.test', target.port))
      expect([...(await wire.take(10))]).to.deep.equal([5, 0, 0, 1, 0, 0, 0, 0, 0, 0])
      wire.send(get('/socks', `allowed.test:${target.port}`))
      expect(parseResponse(await wire.rest()).body).to.equal('hello from target: GET /socks')
      expect(await onlyEvent()).to.deep.include({protocol: 'socks5', host: 'allowed.test', resolved_ip: '127.0.0.1'})
    })

    it('connects to an IPv4 address', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const wire = await client(port)
      await greet(wire)
      const request = Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, 0, 0])
      request.writeUInt16BE(target.port, 8)
      wire.send(request)
      expect((await wire.take(10))[1]).to.equal(0)
      wire.send(get('/', '127.0.0.1'))
      expect(parseResponse(await wire.rest()).body).to.equal('hello from target: GET /')
    })

    it('answers "connection not allowed by ruleset" for a denied host', async () => {
      const port = await startProxy({}, {names: {'denied.test': ['127.0.0.1']}})
      const wire = await client(port)
      await greet(wire)
      wire.send(socksConnectDomain('denied.test', target.port))
      expect([...Buffer.from(await wire.rest(), 'latin1')]).to.deep.equal([5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
      expectNothingReachedTarget()
      expect(await onlyEvent()).to.deep.include({protocol: 'socks5', reason: 'host_not_allowed'})
    })

    it('answers unsupported commands, address types and authentication methods', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const bind = await client(port)
      await greet(bind)
      bind.send(Buffer.from([5, 2, 0, 1, 127, 0, 0, 1, 0, 80]))
      expect((await bind.take(2))[1]).to.equal(0x07)

      const badType = await client(port)
      await greet(badType)
      badType.send(Buffer.from([5, 1, 0, 9, 127, 0, 0, 1, 0, 80]))
      expect((await badType.take(2))[1]).to.equal(0x08)

      const passwordOnly = await client(port)
      passwordOnly.send(Buffer.from([5, 1, 2]))
      expect([...Buffer.from(await passwordOnly.rest(), 'latin1')]).to.deep.equal([5, 0xff])
      expectNothingReachedTarget()
    })
  })

  describe('malformed requests', () => {
    it('answers garbage with 400 and keeps serving', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const garbage = await client(port)
      garbage.send(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x0d, 0x0a, 0x0d, 0x0a]))
      expect(parseResponse(await garbage.rest()).status).to.equal(400)

      const bareLf = await client(port)
      bareLf.send(`GET http://127.0.0.1:${target.port}/ HTTP/1.1\r\nX-Evil: a\nHost: x\r\n\r\n`)
      expect(parseResponse(await bareLf.rest()).headers.get('x-cleanroom-reason')).to.equal('malformed_request')

      const wire = await client(port)
      expect(await connectThrough(wire, `127.0.0.1:${target.port}`)).to.match(/^HTTP\/1\.1 200 /)
      expect(target.connections).to.equal(1)
    })

    it('answers a head over 64 KiB with 431 and keeps serving', async () => {
      const port = await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
      const huge = await client(port)
      huge.send(`GET http://127.0.0.1:${target.port}/ HTTP/1.1\r\nX-Padding: ${'a'.repeat(70 * 1024)}\r\n\r\n`)
      const response = parseResponse(await huge.rest())
      expect([response.status, response.headers.get('x-cleanroom-reason')]).to.deep.equal([431, 'head_too_large'])
      expectNothingReachedTarget()

      const wire = await client(port)
      expect(await connectThrough(wire, `127.0.0.1:${target.port}`)).to.match(/^HTTP\/1\.1 200 /)
      expect((await auditEvents()).map((event) => event.reason)).to.deep.equal(['head_too_large', 'allowed_by_rule'])
    })

    it('audits nothing for a connection that never sends a byte', async () => {
      const port = await startProxy({})
      const wire = await client(port)
      wire.close()
      await new Promise((resolve) => setTimeout(resolve, 50))
      expect(await auditEvents()).to.deep.equal([])
    })
  })

  it('serves a socket accepted by any server, through handle()', async () => {
    await startProxy({allow: [{host: '127.0.0.1', ports: [target.port]}]})
    const other = createServer((socket) => proxy.handle(socket))
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve))
    try {
      const address = other.address()
      if (address === null || typeof address === 'string') throw new Error('no TCP address')
      const wire = await client(address.port)
      expect(await connectThrough(wire, `127.0.0.1:${target.port}`)).to.match(/^HTTP\/1\.1 200 /)
    } finally {
      await proxy.close()
      await new Promise<void>((resolve) => other.close(() => resolve()))
    }
  })
})

async function unusedPort(): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  await new Promise<void>((resolve) => server.close(() => resolve()))
  if (address === null || typeof address === 'string') throw new Error('no TCP address')
  return address.port
}
