import {expect} from 'chai'

import {authority, direct, expectRefusal, getHead, proxyAnswer, via} from '../sandbox.js'
import {DNS, hostAddresses, NO_ROUTE, OTHER_HTTP} from './shared.js'
import type {EgressSuite} from './suite.js'

/** A --dangerously-allow-all sandbox: anything but forbidden addresses and deny rules, and still no direct route. */
export function allowAll(suite: EgressSuite): void {
  describe('--dangerously-allow-all', () => {
    it('allows an unlisted named host, and audits it as allowed_all', async () => {
      const [named, literal] = await suite.open.probe([via.get(`http://unlisted.test:${OTHER_HTTP}/all`), via.tunnel(`${suite.other.address}:${OTHER_HTTP}`, getHead('/all-ip', suite.other.address))])
      expect(proxyAnswer(named!)).to.deep.include({status: 200, body: 'hello from the other host: GET /all'})
      expect(literal!.received).to.include('hello from the other host: GET /all-ip')
      await suite.open.expectAudit([
        {host: 'unlisted.test', port: OTHER_HTTP, action: 'allow', reason: 'allowed_all', resolved_ip: suite.other.address},
        {host: suite.other.address, port: OTHER_HTTP, action: 'allow', reason: 'allowed_all'},
      ])
    })

    it('31 still refuses loopback, the host\'s own addresses and metadata', async () => {
      const {A, P} = suite.ports()
      const own = hostAddresses()
      const results = await suite.open.probe([
        via.connect(`127.0.0.1:${A}`),
        via.connect(`sneaky.test:${A}`),
        via.connect(`[::ffff:127.0.0.1]:${A}`),
        via.connect(`0.0.0.0:${P}`),
        via.socks('domain', 'localhost', A),
        via.connect('169.254.169.254:80'),
        via.connect('[fd00:ec2::254]:80'),
        ...own.map((address) => via.connect(authority(address, P))),
      ])
      expectRefusal(results[0]!, 403, 'forbidden_address', '127.0.0.1:A')
      expectRefusal(results[1]!, 403, 'resolves_to_forbidden_address', 'sneaky.test → 127.0.0.1')
      expectRefusal(results[2]!, 403, 'forbidden_address', '[::ffff:127.0.0.1]:A')
      expectRefusal(results[3]!, 403, 'forbidden_address', '0.0.0.0:P')
      expect(results[4]).to.deep.include({reply: 0x02})
      expectRefusal(results[5]!, 403, 'forbidden_address', 'metadata')
      expectRefusal(results[6]!, 403, 'forbidden_address', 'metadata v6')
      for (const [i, address] of own.entries()) expectRefusal(results[7 + i]!, 403, 'forbidden_address', address)
      const denied = await suite.open.expectAudit([
        {host: '127.0.0.1', port: A, action: 'deny', reason: 'forbidden_address', error: 'loopback'},
        {host: 'sneaky.test', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1'},
        {host: '169.254.169.254', port: 80, action: 'deny', reason: 'forbidden_address', error: 'metadata'},
        {host: 'fd00:ec2::254', port: 80, action: 'deny', reason: 'forbidden_address', error: 'metadata'},
        ...own.map((address) => ({host: address, port: P, action: 'deny' as const, reason: 'forbidden_address' as const})),
      ])
      expect(denied.every((event) => event.bytes_up === 0)).to.equal(true)
      await suite.expectUntouched(suite.allowedWeb, suite.everyAddress)
    })

    it('32 still applies deny rules, by name and by the address a name resolves to', async () => {
      const [byName, byAddress, literal] = await suite.open.probe([
        via.connect(`evil.test:${OTHER_HTTP}`),
        via.connect(`other.test:${DNS}`),
        via.connect(`${suite.other.address}:${DNS}`),
      ])
      expectRefusal(byName!, 403, 'denied_by_rule', 'evil.test')
      expect(expectRefusal(byAddress!, 403, 'denied_by_rule', 'other.test:53').body).to.include(`(it resolves to ${suite.other.address})`)
      expectRefusal(literal!, 403, 'denied_by_rule', 'the other host:53')
      await suite.open.expectAudit([
        {host: 'evil.test', port: OTHER_HTTP, action: 'deny', reason: 'denied_by_rule'},
        {host: 'other.test', port: DNS, action: 'deny', reason: 'denied_by_rule', resolved_ip: suite.other.address, rule: suite.other.cidr},
      ])
      await suite.expectUntouched(suite.other)
    })

    it('33 never gives a direct route', async () => {
      const {A} = suite.ports()
      const [remote, loopback, datagram] = await suite.open.probe([
        direct(suite.other.address, OTHER_HTTP),
        direct('127.0.0.1', A),
        {mode: 'udp', args: {host: suite.other.address, port: DNS}},
      ])
      expect(remote).to.deep.include({connected: false, error: NO_ROUTE[suite.backend].code})
      expect(loopback).to.deep.include({connected: false, error: 'ECONNREFUSED'})
      expect(datagram).to.deep.include({sent: NO_ROUTE[suite.backend].code})
      const getent = await suite.open.sh('getent hosts unlisted.test')
      expect(getent.exit_code).to.equal(2)
      await suite.expectUntouched(suite.other, suite.allowedWeb)
    })
  })
}
