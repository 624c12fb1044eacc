import {expect} from 'chai'
import {networkInterfaces} from 'node:os'

import {type AddressChoice, chooseDialAddress, forbiddenClasses} from '../../src/egress/addresses.js'
import {type Destination, parseDestination} from '../../src/egress/decide.js'
import {mapResolver, policyOf, type RuleInput} from './fixtures.js'

const noLocalAddresses = (): string[] => []

function destination(host: string): Destination {
  const parsed = parseDestination(host)
  if (parsed === undefined) throw new Error(`${host} is not a destination`)
  return parsed
}

/** The choice for `host` on port 443 under the given extra rules, with `answers` as DNS. */
async function choose(host: string, answers: string[], rules: {allow?: RuleInput[]; deny?: RuleInput[]} = {}, local = noLocalAddresses): Promise<AddressChoice> {
  const policy = policyOf({allow: [{host, ports: [443]}, ...(rules.allow ?? [])], deny: rules.deny})
  return chooseDialAddress(policy, destination(host), 443, {resolver: mapResolver({[host]: answers}), localAddresses: local})
}

describe('egress addresses', () => {
  describe('a name that resolves to a forbidden address is refused', () => {
    const forbidden: Array<[answer: string, addressClass: string]> = [
      ['127.0.0.1', 'loopback'],
      ['127.8.9.10', 'loopback'],
      ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['169.254.1.1', 'link-local'],
      ['fe80::1', 'link-local'],
      ['fe80::1%eth0', 'link-local'],
      ['224.0.0.251', 'multicast'],
      ['ff02::fb', 'multicast'],
      ['0.0.0.0', 'unspecified'],
      ['::', 'unspecified'],
      ['255.255.255.255', 'reserved'],
      ['::7f00:1', 'reserved'],
      ['169.254.169.254', 'metadata'],
      ['fd00:ec2::254', 'metadata'],
      ['100.100.100.200', 'metadata'],
      ['168.63.129.16', 'metadata'],
    ]
    for (const [answer, addressClass] of forbidden) {
      it(`${answer} (${addressClass})`, async () => {
        const choice = await choose('rebind.example.com', [answer])
        expect(choice).to.deep.include({ok: false, decision: {action: 'deny', reason: 'resolves_to_forbidden_address'}, addressClass})
      })
    }
  })

  it('allows private-use addresses, for corporate hosts', async () => {
    for (const answer of ['10.1.2.3', '172.16.0.1', '192.168.1.1', '100.64.0.1', 'fd12:3456::1']) {
      expect(await choose('corp.example.com', [answer])).to.deep.include({ok: true, address: answer})
    }
  })

  it('dials an IPv4-mapped answer as IPv4', async () => {
    expect(await choose('mapped.example.com', ['::ffff:10.1.2.3'])).to.deep.equal({ok: true, address: '10.1.2.3', family: 4})
  })

  it('skips forbidden answers and dials the first permitted one', async () => {
    expect(await choose('mixed.example.com', ['127.0.0.1', '203.0.113.5', '203.0.113.6'])).to.deep.equal({ok: true, address: '203.0.113.5', family: 4})
  })

  it('resolves once per check', async () => {
    const resolver = mapResolver({'once.example.com': ['203.0.113.5']})
    const policy = policyOf({allow: [{host: 'once.example.com', ports: [443]}]})
    await chooseDialAddress(policy, destination('once.example.com'), 443, {resolver, localAddresses: noLocalAddresses})
    expect(resolver.lookups).to.deep.equal(['once.example.com'])
  })

  describe('an explicit IP rule opens a forbidden address', () => {
    it('an exact address rule on the port', async () => {
      expect(await choose('local.example.com', ['127.0.0.1'], {allow: [{host: '127.0.0.1', ports: [443]}]})).to.deep.include({ok: true, address: '127.0.0.1'})
    })

    it('a CIDR inside the forbidden range', async () => {
      expect(await choose('local.example.com', ['127.0.0.2'], {allow: [{host: '127.0.0.0/8', ports: [443]}]})).to.deep.include({ok: true, address: '127.0.0.2'})
    })

    it('not a rule for another port', async () => {
      expect(await choose('local.example.com', ['127.0.0.1'], {allow: [{host: '127.0.0.1', ports: [80]}]})).to.deep.include({ok: false, addressClass: 'loopback'})
    })

    it('not a rule for another address in the range', async () => {
      expect(await choose('local.example.com', ['127.0.0.2'], {allow: [{host: '127.0.0.1', ports: [443]}]})).to.deep.include({ok: false, addressClass: 'loopback'})
    })

    it('not a broad CIDR written for a network (the metadata address inside link-local)', async () => {
      const choice = await choose('meta.example.com', ['169.254.169.254'], {allow: [{host: '169.254.0.0/16', ports: [443]}]})
      expect(choice).to.deep.include({ok: false, addressClass: 'metadata'})
      const exact = await choose('meta.example.com', ['169.254.169.254'], {allow: [{host: '169.254.169.254', ports: [443]}]})
      expect(exact).to.deep.include({ok: true, address: '169.254.169.254'})
    })

    it('not a name rule: allowing a name never opens what it resolves to', async () => {
      expect(await choose('localhost', ['127.0.0.1', '::1'])).to.deep.include({ok: false, addressClass: 'loopback'})
    })
  })

  describe("the host's own interface addresses", () => {
    const local = (): string[] => ['127.0.0.1', '::1', '10.9.8.7', 'fd00::2']

    it('are refused even when a CIDR rule covers them', async () => {
      const choice = await choose('host.example.com', ['10.9.8.7'], {allow: [{host: '10.0.0.0/8', ports: [443]}]}, local)
      expect(choice).to.deep.include({ok: false, address: '10.9.8.7', addressClass: 'local-interface'})
      expect(await choose('other.example.com', ['10.9.8.6'], {}, local)).to.deep.include({ok: true, address: '10.9.8.6'})
    })

    it('are classed by their range when they have one (127.0.0.1 is loopback)', async () => {
      const choice = await choose('local.example.com', ['127.0.0.1'], {allow: [{host: '127.0.0.0/8', ports: [443]}]}, local)
      expect(choice).to.deep.include({ok: true, address: '127.0.0.1'})
    })

    it('are opened by an exact address rule', async () => {
      const choice = await choose('host.example.com', ['fd00::2'], {allow: [{host: 'fd00::2', ports: [443]}]}, local)
      expect(choice).to.deep.equal({ok: true, address: 'fd00::2', family: 6})
    })

    it("include this machine's real interfaces by default", () => {
      const own = Object.values(networkInterfaces())
        .flatMap((addresses) => addresses ?? [])
        .find((info) => !info.internal && info.family === 'IPv4')
      if (own === undefined) throw new Error('this test needs a non-loopback IPv4 interface (os.networkInterfaces() lists none)')
      expect(forbiddenClasses(own.address)).to.include('local-interface')
    })
  })

  describe('IP literal destinations go through the same check', () => {
    for (const [host, addressClass] of [
      ['127.0.0.1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'],
      ['169.254.169.254', 'metadata'],
      ['0.0.0.0', 'unspecified'],
    ] as const) {
      it(`${host} (${addressClass})`, async () => {
        const policy = policyOf({allow: [{host: '0.0.0.0/1', ports: [443]}, {host: '::/1', ports: [443]}]})
        const choice = await chooseDialAddress(policy, destination(host), 443, {resolver: mapResolver({}), localAddresses: noLocalAddresses})
        expect(choice).to.deep.include({ok: false, decision: {action: 'deny', reason: 'forbidden_address'}, addressClass})
      })
    }
  })

  it('refuses an answer a deny rule covers', async () => {
    const choice = await choose('db.example.com', ['10.20.30.4'], {deny: [{host: '10.20.30.0/24'}]})
    expect(choice).to.deep.include({ok: false, decision: {action: 'deny', reason: 'denied_by_rule', rule: '10.20.30.0/24'}, address: '10.20.30.4'})
  })

  it('reports a name that does not resolve', async () => {
    const policy = policyOf({allow: [{host: 'nowhere.example.com', ports: [443]}]})
    const choice = await chooseDialAddress(policy, destination('nowhere.example.com'), 443, {resolver: mapResolver({}), localAddresses: noLocalAddresses})
    expect(choice).to.deep.equal({ok: false, decision: {action: 'deny', reason: 'resolve_failed'}, why: 'ENOTFOUND'})
    expect(await choose('empty.example.com', [])).to.deep.include({ok: false, decision: {action: 'deny', reason: 'resolve_failed'}})
  })
})
