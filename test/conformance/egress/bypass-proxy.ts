import {expect} from 'chai'

import {authority, connectHead, expectRefusal, getHead, hostNameservers, proxyAnswer, via} from '../sandbox.js'
import {DNS} from './shared.js'
import type {EgressSuite} from './suite.js'

/**
 * Bypass attempts that play with the proxy protocols: unlisted ports, request forms, Host
 * headers, SNI, SOCKS5, pipelining.
 */

/** Requests whose form, Host header or SNI says one thing and means another (10-15). */
export function requestTricks(suite: EgressSuite): void {
  it('10 CONNECT to an allowed host on a port its rule does not list is refused', async () => {
    const {U} = suite.ports()
    const [byName, byAddress, absolute, socks] = await suite.main.probe([
      via.connect(`allowed.test:${U}`),
      via.connect(`127.0.0.1:${U}`),
      via.get(`http://allowed.test:${U}/`, `allowed.test:${U}`),
      via.socks('domain', 'allowed.test', U),
    ])
    // To the program an unlisted port is a destination not allowed; the audit log says which rule lacked the port.
    const answer = expectRefusal(byName!, 403, 'host_not_allowed', 'allowed.test:U')
    expect(answer.body).to.equal(
      `host_not_allowed: allowed.test:${U} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`,
    )
    expectRefusal(byAddress!, 403, 'host_not_allowed', '127.0.0.1:U')
    expectRefusal(absolute!, 403, 'host_not_allowed', 'http://allowed.test:U/')
    expect(socks).to.deep.include({reply: 0x02})
    await suite.main.expectAudit([
      {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', rule: 'allowed.test', protocol: 'connect', resolved_ip: null},
      {host: '127.0.0.1', port: U, action: 'deny', reason: 'port_not_allowed', rule: '127.0.0.1'},
      {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', protocol: 'http'},
      {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.unlistedWeb)
  })

  it('11 absolute-form HTTP to a denied or unlisted host is refused', async () => {
    const {A, D} = suite.ports()
    const [denied, literal, unlisted] = await suite.main.probe([
      via.get(`http://denied.test:${D}/secret`, `denied.test:${D}`),
      via.get(`http://127.0.0.1:${D}/secret`),
      via.get(`http://sneaky.test:${A}/secret`),
    ])
    expectRefusal(denied!, 403, 'denied_by_rule', 'denied.test')
    expectRefusal(literal!, 403, 'host_not_allowed', '127.0.0.1:D (its IP rule lists other ports)')
    expect(expectRefusal(unlisted!, 403, 'host_not_allowed', 'sneaky.test').body).to.equal(
      `host_not_allowed: sneaky.test:${A} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`,
    )
    await suite.main.expectAudit([
      {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', rule: 'denied.test', protocol: 'http'},
      {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', protocol: 'http'},
      {host: 'sneaky.test', port: A, action: 'deny', reason: 'host_not_allowed', protocol: 'http'},
    ])
    await suite.expectUntouched(suite.deniedWeb, suite.allowedWeb)
  })

  it('12 an allowed absolute URI with a Host header naming a denied host is refused', async () => {
    const {A, D} = suite.ports()
    const [withPort, withoutPort] = await suite.main.probe([
      via.get(`http://allowed.test:${A}/`, `denied.test:${D}`),
      via.get(`http://allowed.test:${A}/`, 'denied.test'),
    ])
    expectRefusal(withPort!, 400, 'host_mismatch', 'Host: denied.test:D')
    expectRefusal(withoutPort!, 400, 'host_mismatch', 'Host: denied.test')
    await suite.main.expectAudit([
      {action: 'deny', reason: 'host_mismatch', protocol: 'http'},
      {action: 'deny', reason: 'host_mismatch', protocol: 'http'},
    ])
    await suite.expectUntouched(suite.allowedWeb, suite.deniedWeb)
  })

  it('13 a request routed by its Host header only (origin-form, transparent-proxy style) is refused', async () => {
    const {A, T} = suite.ports()
    const [originForm, https] = await suite.main.probe([
      via.raw(getHead('/secret', `allowed.test:${A}`)),
      via.get(`https://allowed.test:${T}/`, `allowed.test:${T}`),
    ])
    expectRefusal(originForm!, 400, 'unsupported_request', 'origin-form')
    expectRefusal(https!, 400, 'unsupported_request', 'https:// absolute-form')
    await suite.main.expectAudit([
      {action: 'deny', reason: 'unsupported_request'},
      {action: 'deny', reason: 'unsupported_request'},
    ])
    await suite.expectUntouched(suite.allowedWeb, suite.gitTls)
  })

  it('14 a Host header naming a denied host inside a CONNECT tunnel does not re-route: the bytes go to the allowed target only', async () => {
    const {A, D} = suite.ports()
    const result = await suite.main.probeOne(via.tunnel(`allowed.test:${A}`, getHead('/in-tunnel', `denied.test:${D}`)))
    expect(result.received).to.match(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK/)
    expect(result.received).to.include('hello from allowed: GET /in-tunnel')
    expect(suite.allowedWeb.requests).to.deep.equal([{method: 'GET', url: '/in-tunnel', host: `denied.test:${D}`}])
    await suite.main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', resolved_ip: '127.0.0.1'}])
    await suite.expectUntouched(suite.deniedWeb)
  })

  it('15 a TLS SNI naming a denied host inside a CONNECT tunnel does not re-route', async () => {
    const {T} = suite.ports()
    const result = await suite.main.probeOne({
      mode: 'connectTls',
      args: {authority: `allowed.test:${T}`, servername: 'denied.test', request: getHead('/sni', 'denied.test')},
    })
    expect(result.connect).to.match(/^HTTP\/1\.1 200/)
    expect(suite.gitTls.servernames).to.deep.equal(['denied.test'])
    expect(suite.gitTls.requests).to.deep.equal([{method: 'GET', url: '/sni', host: 'denied.test'}])
    await suite.expectUntouched(suite.deniedWeb)
  })
}

/** SOCKS5 to denied destinations, resolvers as destinations, pipelined requests (28-30). */
export function protocolTricks(suite: EgressSuite): void {
  it('28 SOCKS5 to denied destinations gets "not allowed by ruleset" (0x02)', async () => {
    const {A, D, P} = suite.ports()
    const results = await suite.main.probe([
      via.socks('ipv4', '127.0.0.1', D),
      via.socks('domain', 'denied.test', D),
      via.socks('domain', 'sneaky.test', A),
      via.socks('ipv4', suite.other.hostAddress, P),
    ])
    for (const result of results) expect(result, JSON.stringify(result)).to.deep.include({method: 0, reply: 0x02})
    await suite.main.expectAudit([
      {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
      {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'socks5'},
      {host: 'sneaky.test', port: A, action: 'deny', reason: 'host_not_allowed', protocol: 'socks5'},
      {host: suite.other.hostAddress, port: P, action: 'deny', reason: 'forbidden_address', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.deniedWeb, suite.allowedWeb, suite.everyAddress)
  })

  it('29 resolvers are not destinations through the proxy either', async () => {
    const servers = [...(await hostNameservers()), '8.8.8.8']
    const results = await suite.main.probe([...servers.map((server) => via.connect(authority(server, DNS))), via.socks('ipv4', suite.other.address, DNS)])
    for (const result of results.slice(0, -1)) expectRefusal(result, 403, 'host_not_allowed', 'resolver')
    expect(results.at(-1)).to.deep.include({reply: 0x02})
    await suite.main.expectAudit([
      // The main policy's broad rules name these addresses on other ports: the audit log says port_not_allowed.
      ...servers.map((server) => ({host: server, port: DNS, action: 'deny' as const, reason: 'port_not_allowed' as const, protocol: 'connect' as const})),
      {host: suite.other.address, port: DNS, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.other)
  })

  it('30 a second request pipelined behind an allowed one does not reach a denied host', async () => {
    const {A, D} = suite.ports()
    const second = `GET http://denied.test:${D}/second HTTP/1.1\r\nHost: denied.test:${D}\r\n\r\n`
    const [forwarded, tunnelled] = await suite.main.probe([
      via.raw(`GET http://allowed.test:${A}/first HTTP/1.1\r\nHost: allowed.test:${A}\r\n\r\n${second}`),
      via.raw(`${connectHead(`allowed.test:${A}`)}${connectHead(`denied.test:${D}`)}`),
    ])
    expect(proxyAnswer(forwarded!)).to.deep.include({status: 200, body: 'hello from allowed: GET /first'})
    expect(tunnelled!.received).to.match(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/)
    // Whatever the allowed server made of the rest, it was the allowed server's to read.
    expect(suite.allowedWeb.connections).to.have.length(2)
    await suite.main.expectAudit([
      {host: 'allowed.test', port: A, action: 'allow', protocol: 'http'},
      {host: 'allowed.test', port: A, action: 'allow', protocol: 'connect'},
    ])
    expect((await suite.main.auditSinceMark()).filter((event) => event.host === 'denied.test'), 'denied.test was never a destination').to.deep.equal([])
    await suite.expectUntouched(suite.deniedWeb)
  })
}
