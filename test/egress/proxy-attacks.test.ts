import {expect} from 'chai'

import {policyOf, parseResponse, ProxyUnderTest, RecordingServer} from './fixtures.js'
import {tempDirs} from '../helpers/tmp.js'

/** A SOCKS4 request: CONNECT (1) or BIND (2), a port, an IPv4 address, a user id; SOCKS4a adds a name after 0.0.0.x. */
function socks4(command: number, port: number, address: number[], name?: string): Buffer {
  const head = Buffer.from([4, command, port >> 8, port & 0xff, ...address])
  return Buffer.concat([head, Buffer.from('user\0'), ...(name === undefined ? [] : [Buffer.from(`${name}\0`)])])
}

describe('egress proxy under attack', () => {
  const dirs = tempDirs('cleanroom-egress-attacks-')
  let target: RecordingServer
  let proxy: ProxyUnderTest | undefined

  beforeEach(async () => {
    target = await RecordingServer.start('target')
  })

  afterEach(async () => {
    await proxy?.close()
    proxy = undefined
    await target.close()
    await dirs.cleanup()
  })

  async function start(options: {headTimeoutMs?: number} = {}): Promise<ProxyUnderTest> {
    proxy = await ProxyUnderTest.start(await dirs.make(), {
      policy: policyOf({allow: [{host: '127.0.0.1', ports: [target.port]}, {host: 'allowed.test', ports: [target.port]}]}),
      ...options,
    })
    return proxy
  }

  it('rejects SOCKS4 and SOCKS4a (CONNECT and BIND) with SOCKS4\'s "rejected", dialling nothing, one audit line each', async () => {
    const under = await start()
    const requests = [
      socks4(1, target.port, [127, 0, 0, 1]),
      socks4(2, target.port, [127, 0, 0, 1]),
      socks4(1, target.port, [0, 0, 0, 1], 'allowed.test'),
      socks4(2, target.port, [0, 0, 0, 9], 'denied.test'),
    ]
    for (const request of requests) {
      const wire = await under.client()
      wire.send(request)
      expect([...Buffer.from(await wire.rest(), 'latin1')]).to.deep.equal([0, 0x5b, 0, 0, 0, 0, 0, 0])
    }
    const events = await under.events()
    expect(events.map(({host, port, action, reason, protocol}) => ({host, port, action, reason, protocol}))).to.have.deep.members([
      {host: '127.0.0.1', port: target.port, action: 'deny', reason: 'unsupported_request', protocol: 'socks4'},
      {host: '127.0.0.1', port: target.port, action: 'deny', reason: 'unsupported_request', protocol: 'socks4'},
      {host: 'allowed.test', port: target.port, action: 'deny', reason: 'unsupported_request', protocol: 'socks4'},
      {host: 'denied.test', port: target.port, action: 'deny', reason: 'unsupported_request', protocol: 'socks4'},
    ])
    expect(events.map((event) => event.error)).to.include('SOCKS4a BIND is not supported: the proxy speaks SOCKS5 (ALL_PROXY names it)')
    expect([under.dials, target.connections]).to.deep.equal([[], 0])
  })

  it('refuses SOCKS5 BIND and UDP ASSOCIATE to an allowed destination with "command not supported", dialling nothing', async () => {
    const under = await start()
    for (const command of [2, 3]) {
      const wire = await under.client()
      wire.send(Buffer.from([5, 1, 0, 5, command, 0, 1, 127, 0, 0, 1, target.port >> 8, target.port & 0xff]))
      expect([...Buffer.from(await wire.rest(), 'latin1')]).to.deep.equal([5, 0, 5, 0x07, 0, 1, 0, 0, 0, 0, 0, 0])
    }
    const events = await under.events()
    expect(events.map((event) => [event.reason, event.error])).to.deep.equal([
      ['unsupported_request', 'SOCKS5 BIND is not supported (only CONNECT)'],
      ['unsupported_request', 'SOCKS5 UDP ASSOCIATE is not supported (only CONNECT)'],
    ])
    expect([under.dials, target.connections]).to.deep.equal([[], 0])
  })

  it('forwards one request per connection: a request pipelined after the body never leaves the proxy', async () => {
    const under = await start()
    const smuggled = `GET http://denied.test:${target.port}/smuggled HTTP/1.1\r\nHost: denied.test:${target.port}\r\n\r\n`
    const wire = await under.client()
    wire.send(`POST http://127.0.0.1:${target.port}/first HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello${smuggled}`)
    expect(parseResponse(await wire.rest()).body).to.equal('hello from target: POST /first')
    const chunked = await under.client()
    chunked.send(`POST http://127.0.0.1:${target.port}/second HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n${smuggled}`)
    expect(parseResponse(await chunked.rest()).body).to.equal('hello from target: POST /second')
    expect(target.requests.map(({method, url, body}) => [method, url, body])).to.deep.equal([
      ['POST', '/first', 'hello'],
      ['POST', '/second', 'hi'],
    ])
    expect((await under.events()).map((event) => event.host)).to.deep.equal(['127.0.0.1', '127.0.0.1'])
  })

  it('cuts a slow head off at the head timeout with 408, audited once, while other clients are served', async () => {
    const under = await start({headTimeoutMs: 400})
    const slow = await under.client()
    slow.send('GET http://127.0.0.1')
    const quick = await under.client()
    quick.send(`GET http://127.0.0.1:${target.port}/quick HTTP/1.1\r\n\r\n`)
    expect(parseResponse(await quick.rest()).status).to.equal(200)
    const answer = parseResponse(await slow.rest())
    expect([answer.status, answer.headers.get('x-cleanroom-reason'), answer.body]).to.deep.equal([408, 'head_timeout', 'head_timeout: the request head was not complete within 0.4 s'])
    expect((await under.events()).map((event) => event.reason)).to.have.members(['allowed_by_rule', 'head_timeout'])
  })
})
