import {expect} from 'chai'

import type {AuditEvent} from '../../../src/egress/audit.js'
import {authority, expectRefusal, getHead, via} from '../sandbox.js'
import {hostAddresses, isLinkLocal, isLoopback} from './shared.js'
import type {EgressSuite} from './suite.js'

/**
 * Bypass attempts through the proxy that name a forbidden address: literals, the host's own
 * addresses, loopback, metadata, names that resolve to them, unusual spellings.
 */

/** IPv6 and IPv4-mapped literals of loopback (08-09). */
export function addressLiterals(suite: EgressSuite): void {
  it('08 IPv6 literals ([::1], [::127.0.0.1]) through the proxy are refused', async () => {
    const {D, P} = suite.ports()
    const [loopback, unlisted, absolute, compatible, socks] = await suite.main.probe([
      via.connect(`[::1]:${P}`),
      via.connect(`[::1]:${D}`),
      via.get(`http://[::1]:${P}/`),
      via.connect(`[::127.0.0.1]:${P}`),
      via.socks('ipv6', '::1', P),
    ])
    // ::/1 allows [::1]:P by CIDR; the address check refuses it all the same.
    expect(expectRefusal(loopback!, 403, 'forbidden_address', '[::1]:P').body).to.include('a loopback address')
    // The program is told host_not_allowed; the audit log keeps that a rule (::/1) named the address on other ports.
    expectRefusal(unlisted!, 403, 'host_not_allowed', '[::1]:D')
    expectRefusal(absolute!, 403, 'forbidden_address', 'http://[::1]:P/')
    expect(expectRefusal(compatible!, 403, 'forbidden_address', '[::127.0.0.1]:P').body).to.include('a reserved address')
    expect(socks).to.deep.include({method: 0, reply: 0x02})
    await suite.main.expectAudit([
      {host: '::1', port: P, action: 'deny', reason: 'forbidden_address', error: 'loopback', protocol: 'connect'},
      {host: '::1', port: D, action: 'deny', reason: 'port_not_allowed', rule: '::/1'},
      {host: '::1', port: P, action: 'deny', protocol: 'http'},
      {host: '::1', port: P, action: 'deny', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.everyAddress, suite.deniedWeb)
  })

  it('09 IPv4-mapped IPv6 literals ([::ffff:127.0.0.1]) are their IPv4 address, and refused', async () => {
    const {D, P} = suite.ports()
    const [mapped, hex, unlisted, socks] = await suite.main.probe([
      via.connect(`[::ffff:127.0.0.1]:${P}`),
      via.connect(`[::ffff:7f00:1]:${P}`),
      via.connect(`[::ffff:127.0.0.1]:${D}`),
      via.socks('ipv6', '::ffff:127.0.0.1', P),
    ])
    expectRefusal(mapped!, 403, 'forbidden_address', '[::ffff:127.0.0.1]:P')
    expectRefusal(hex!, 403, 'forbidden_address', '[::ffff:7f00:1]:P')
    expectRefusal(unlisted!, 403, 'host_not_allowed', '[::ffff:127.0.0.1]:D')
    expect(socks).to.deep.include({reply: 0x02})
    await suite.main.expectAudit([
      {host: '127.0.0.1', port: P, action: 'deny', reason: 'forbidden_address', error: 'loopback'},
      {host: '127.0.0.1', port: P, action: 'deny', reason: 'forbidden_address'},
      {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', rule: '127.0.0.1'},
      {host: '127.0.0.1', port: P, action: 'deny', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.everyAddress, suite.deniedWeb)
  })
}

/** The host's own addresses, loopback without an IP rule, metadata, DNS rebinding and other spellings (16-22). */
export function forbiddenAddresses(suite: EgressSuite): void {
  it('16 CONNECT to each of the host\'s own interface addresses is refused, even under a broad CIDR rule', async () => {
    const {P} = suite.ports()
    const addresses = hostAddresses()
    expect(addresses).to.include.members(['127.0.0.1', suite.other.hostAddress])
    const results = await suite.main.probe(addresses.map((address) => via.connect(authority(address, P))))
    for (const [i, result] of results.entries()) expectRefusal(result, 403, 'forbidden_address', addresses[i]!)
    const ownLine = (address: string): Partial<AuditEvent> => ({host: address, port: P, action: 'deny', reason: 'forbidden_address'})
    await suite.main.expectAudit(addresses.map((address) => ownLine(address)))
    const external = addresses.filter((address) => !isLoopback(address) && !isLinkLocal(address))
    const events = await suite.main.auditSinceMark()
    for (const address of external) expect(events.find((event) => event.host === address)?.error, address).to.equal('local-interface')
    await suite.expectUntouched(suite.everyAddress)
  })

  it('17 CONNECT to 127.0.0.1, localhost, [::1] and 0.0.0.0 without an IP rule is refused', async () => {
    const {A, P} = suite.ports()
    // A sandbox with name rules only (allowed.test and localhost on A), no IP rule at all.
    const literals = ['127.0.0.1', '::1', '0.0.0.0', '::ffff:127.0.0.1']
    const results = await suite.nameOnly.probe([...literals.map((host) => via.connect(authority(host, A))), via.connect(`localhost:${A}`), via.socks('domain', 'localhost', A)])
    for (const [i, host] of literals.entries()) expectRefusal(results[i]!, 403, 'host_not_allowed', host)
    // A name rule never opens loopback: localhost's answers (127.0.0.1, ::1) are refused.
    expect(expectRefusal(results[4]!, 403, 'resolves_to_forbidden_address', 'localhost:A').body).to.include('localhost resolves to 127.0.0.1, a loopback address')
    expect(results[5]).to.deep.include({reply: 0x02})
    await suite.nameOnly.expectAudit([
      ...literals.map((host) => ({host: host.replace('::ffff:', ''), port: A, action: 'deny' as const, reason: 'host_not_allowed' as const, resolved_ip: null})),
      {host: 'localhost', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1', error: 'loopback', protocol: 'connect'},
      {host: 'localhost', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'socks5'},
    ])
    // Broad CIDR rules (0.0.0.0/1, ::/1 on P) in the main sandbox do not open them either.
    const broad = await suite.main.probe([via.connect(`0.0.0.0:${P}`), via.connect(`127.0.0.1:${P}`), via.connect(`[::1]:${P}`), via.connect(`localhost:${P}`)])
    expect(expectRefusal(broad[0]!, 403, 'forbidden_address', '0.0.0.0:P').body).to.include('the unspecified address')
    expectRefusal(broad[1]!, 403, 'forbidden_address', '127.0.0.1:P under 0.0.0.0/1')
    expectRefusal(broad[2]!, 403, 'forbidden_address', '[::1]:P under ::/1')
    expectRefusal(broad[3]!, 403, 'resolves_to_forbidden_address', 'localhost:P')
    await suite.main.expectAudit([{host: '0.0.0.0', port: P, action: 'deny', reason: 'forbidden_address', error: 'unspecified'}])
    await suite.expectUntouched(suite.allowedWeb, suite.everyAddress)
  })

  it('18 a CIDR rule written for a network does not open the host\'s own address inside it', async () => {
    const {P} = suite.ports()
    const result = await suite.main.probeOne(via.connect(`${suite.other.hostAddress}:${P}`))
    expect(expectRefusal(result, 403, 'forbidden_address', 'host end of the /30').body).to.include("one of the host's own addresses")
    await suite.main.expectAudit([{host: suite.other.hostAddress, port: P, action: 'deny', reason: 'forbidden_address', error: 'local-interface', resolved_ip: suite.other.hostAddress}])
    await suite.expectUntouched(suite.everyAddress)
  })

  it('19 cloud metadata addresses are refused before any dial', async () => {
    const metadata = ['169.254.169.254', '100.100.100.200', '168.63.129.16', 'fd00:ec2::254']
    const results = await suite.main.probe([
      ...metadata.map((address) => via.connect(authority(address, 80))),
      via.get('http://169.254.169.254/latest/meta-data/'),
      via.socks('ipv4', '169.254.169.254', 80),
    ])
    // A 403 (not a 502 "upstream_failed") means the proxy never tried to connect.
    for (const [i, result] of results.slice(0, 5).entries()) expect(expectRefusal(result, 403, 'forbidden_address', metadata[i] ?? 'GET').body).to.include('a cloud metadata address')
    expect(results[5]).to.deep.include({reply: 0x02})
    const events = await suite.main.expectAudit([
      ...metadata.map((address) => ({host: address, port: 80, action: 'deny' as const, reason: 'forbidden_address' as const, error: 'metadata'})),
      {host: '169.254.169.254', port: 80, action: 'deny', protocol: 'http'},
      {host: '169.254.169.254', port: 80, action: 'deny', protocol: 'socks5'},
    ])
    for (const event of events) expect(event).to.deep.include({bytes_up: 0, bytes_down: 0})
  })

  it('20 DNS rebinding: an allowed name that resolves to loopback is refused', async () => {
    const {A, P} = suite.ports()
    const [connect, absolute, socks] = await suite.main.probe([via.connect(`rebind.test:${P}`), via.get(`http://rebind.test:${P}/`), via.socks('domain', 'rebind.test', P)])
    expect(expectRefusal(connect!, 403, 'resolves_to_forbidden_address', 'rebind.test').body).to.equal(
      `resolves_to_forbidden_address: rebind.test resolves to 127.0.0.1, a loopback address, which a sandbox may not reach (to reach it anyway, allow 127.0.0.1 on port ${P} with an IP rule in sandbox.network.allow in cleanroom.yaml)`,
    )
    expectRefusal(absolute!, 403, 'resolves_to_forbidden_address', 'http://rebind.test')
    expect(socks).to.deep.include({reply: 0x02})
    await suite.main.expectAudit([
      {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1', protocol: 'connect'},
      {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'http'},
      {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'socks5'},
    ])
    // The allowed name itself, where no IP rule opens its loopback answer.
    const [named, namedSocks] = await suite.nameOnly.probe([via.tunnel(`allowed.test:${A}`, getHead('/', `allowed.test:${A}`)), via.socks('domain', 'allowed.test', A, getHead('/', `allowed.test:${A}`))])
    expectRefusal(named!, 403, 'resolves_to_forbidden_address', 'allowed.test without an IP rule')
    expect(namedSocks).to.deep.include({reply: 0x02})
    await suite.nameOnly.expectAudit([{host: 'allowed.test', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1'}])
    await suite.expectUntouched(suite.everyAddress, suite.allowedWeb)
  })

  it('21 decimal, octal, hex and short IPv4 spellings are refused as invalid hosts', async () => {
    const {P} = suite.ports()
    const spellings = ['2130706433', '0177.0.0.1', '0x7f.0.0.1', '127.1', '0x7f000001', '127.000.000.001', '017700000001']
    const results = await suite.main.probe(spellings.flatMap((host) => [via.connect(`${host}:${P}`), via.get(`http://${host}:${P}/`), via.socks('domain', host, P)]))
    for (const [i, host] of spellings.entries()) {
      expectRefusal(results[3 * i]!, 400, 'invalid_host', `CONNECT ${host}`)
      expectRefusal(results[3 * i + 1]!, 400, 'invalid_host', `GET http://${host}`)
      expect(results[3 * i + 2], `SOCKS ${host}`).to.deep.include({reply: 0x02})
    }
    await suite.main.expectAudit(
      spellings.flatMap((host) => ['connect', 'http', 'socks5'].map((protocol) => ({host, port: P, action: 'deny' as const, reason: 'invalid_host' as const, protocol: protocol as AuditEvent['protocol']}))),
    )
    await suite.expectUntouched(suite.everyAddress)
  })

  it('22 trailing-dot and upper-case spellings of a denied host meet its deny rule', async () => {
    const {A, D} = suite.ports()
    const [wildcardDenied, denied, absolute, socks] = await suite.main.probe([
      via.connect(`BLOCKED.Allowed.TEST.:${A}`),
      via.connect(`DENIED.TEST.:${D}`),
      via.get(`http://Denied.Test.:${D}/`),
      via.socks('domain', 'BLOCKED.ALLOWED.TEST.', A),
    ])
    expect(expectRefusal(wildcardDenied!, 403, 'denied_by_rule', 'BLOCKED.Allowed.TEST.').body).to.include('deny rule for blocked.allowed.test')
    expectRefusal(denied!, 403, 'denied_by_rule', 'DENIED.TEST.')
    expectRefusal(absolute!, 403, 'denied_by_rule', 'http://Denied.Test.')
    expect(socks).to.deep.include({reply: 0x02})
    await suite.main.expectAudit([
      {host: 'blocked.allowed.test', port: A, action: 'deny', reason: 'denied_by_rule', rule: 'blocked.allowed.test', protocol: 'connect'},
      {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'connect'},
      {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'http'},
      {host: 'blocked.allowed.test', port: A, action: 'deny', reason: 'denied_by_rule', protocol: 'socks5'},
    ])
    await suite.expectUntouched(suite.allowedWeb, suite.deniedWeb)
  })
}
