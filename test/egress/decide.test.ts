import {expect} from 'chai'

import {decide, type EgressDecision, parseDestination} from '../../src/egress/decide.js'
import {policyOf} from './fixtures.js'

describe('egress decisions', () => {
  const policy = policyOf({
    allow: [
      {host: 'api.github.com', ports: [443]},
      {host: 'github.com', ports: [22, 443]},
      {host: '*.githubusercontent.com', ports: [443]},
      {host: '*.example.com', ports: [443, 8443]},
      {host: 'internal.example.com', ports: [80]},
      {host: 'evil.example.com', ports: [443]},
      {host: '10.20.0.0/16', ports: [5432]},
      {host: '192.0.2.7', ports: [443]},
      {host: '2001:db8::/32', ports: [443]},
      {host: 'xn--bcher-kva.example', ports: [443]},
    ],
    deny: [{host: 'evil.example.com'}, {host: '10.20.30.0/24'}, {host: 'github.com', ports: [22]}, {host: '*.ads.example.com'}],
  })

  const table: Array<[host: string, port: number, expected: EgressDecision]> = [
    // Exact names, and every spelling of them.
    ['api.github.com', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'api.github.com'}],
    ['API.GitHub.COM', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'api.github.com'}],
    ['api.github.com.', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'api.github.com'}],
    ['bücher.example', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'xn--bcher-kva.example'}],
    ['api.github.com', 80, {action: 'deny', reason: 'port_not_allowed', rule: 'api.github.com'}],
    ['github.com', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'github.com'}],
    ['gist.github.com', 443, {action: 'deny', reason: 'host_not_allowed'}],
    // Wildcards cover subdomains at any depth, never the apex.
    ['raw.githubusercontent.com', 443, {action: 'allow', reason: 'allowed_by_wildcard', rule: '*.githubusercontent.com'}],
    ['a.b.githubusercontent.com', 443, {action: 'allow', reason: 'allowed_by_wildcard', rule: '*.githubusercontent.com'}],
    ['githubusercontent.com', 443, {action: 'deny', reason: 'host_not_allowed'}],
    ['evilgithubusercontent.com', 443, {action: 'deny', reason: 'host_not_allowed'}],
    // An exact rule is reported before a wildcard; either rule's ports allow.
    ['internal.example.com', 80, {action: 'allow', reason: 'allowed_by_rule', rule: 'internal.example.com'}],
    ['internal.example.com', 8443, {action: 'allow', reason: 'allowed_by_wildcard', rule: '*.example.com'}],
    ['internal.example.com', 22, {action: 'deny', reason: 'port_not_allowed', rule: 'internal.example.com'}],
    // Deny beats every allow, in any spelling of the host.
    ['evil.example.com', 443, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
    ['EVIL.Example.COM.', 443, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
    ['evil.example.com', 8443, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
    ['tracker.ads.example.com', 443, {action: 'deny', reason: 'denied_by_rule', rule: '*.ads.example.com'}],
    ['github.com', 22, {action: 'deny', reason: 'denied_by_rule', rule: 'github.com'}],
    // IP literals match only IP and CIDR rules, and names only name rules.
    ['10.20.1.2', 5432, {action: 'allow', reason: 'allowed_by_cidr', rule: '10.20.0.0/16'}],
    ['10.20.1.2', 5433, {action: 'deny', reason: 'port_not_allowed', rule: '10.20.0.0/16'}],
    ['10.20.30.4', 5432, {action: 'deny', reason: 'denied_by_rule', rule: '10.20.30.0/24'}],
    ['192.0.2.7', 443, {action: 'allow', reason: 'allowed_by_rule', rule: '192.0.2.7'}],
    ['[2001:db8::1]', 443, {action: 'allow', reason: 'allowed_by_cidr', rule: '2001:db8::/32'}],
    ['2001:DB8:0:0::1', 443, {action: 'allow', reason: 'allowed_by_cidr', rule: '2001:db8::/32'}],
    ['140.82.112.3', 443, {action: 'deny', reason: 'host_not_allowed'}],
    // IPv4-mapped IPv6 is the IPv4 address.
    ['::ffff:192.0.2.7', 443, {action: 'allow', reason: 'allowed_by_rule', rule: '192.0.2.7'}],
    ['[::ffff:c000:207]', 443, {action: 'allow', reason: 'allowed_by_rule', rule: '192.0.2.7'}],
    ['[::ffff:10.20.30.4]', 5432, {action: 'deny', reason: 'denied_by_rule', rule: '10.20.30.0/24'}],
    // Numeric spellings other than dotted decimal are refused, never read as names.
    ['2130706433', 443, {action: 'deny', reason: 'invalid_host'}],
    ['3221225991', 443, {action: 'deny', reason: 'invalid_host'}],
    ['0177.0.0.1', 443, {action: 'deny', reason: 'invalid_host'}],
    ['0x7f.1', 443, {action: 'deny', reason: 'invalid_host'}],
    ['0xc0.0.2.7', 443, {action: 'deny', reason: 'invalid_host'}],
    ['192.0.2.07', 443, {action: 'deny', reason: 'invalid_host'}],
    ['127.1', 443, {action: 'deny', reason: 'invalid_host'}],
    ['192.0.2.7.', 443, {action: 'allow', reason: 'allowed_by_rule', rule: '192.0.2.7'}],
    ['ｅｖｉｌ.example.com', 443, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
    ['１９２.０.２.７', 443, {action: 'deny', reason: 'invalid_host'}],
    ['foo.0x10', 443, {action: 'deny', reason: 'invalid_host'}],
    // Not a host at all.
    ['', 443, {action: 'deny', reason: 'invalid_host'}],
    ['*.example.com', 443, {action: 'deny', reason: 'invalid_host'}],
    ['10.20.0.0/16', 5432, {action: 'deny', reason: 'invalid_host'}],
    ['api.github.com:443', 443, {action: 'deny', reason: 'invalid_host'}],
    ['ex%61mple.example.com', 443, {action: 'deny', reason: 'invalid_host'}],
    ['api.github.com\t', 443, {action: 'deny', reason: 'invalid_host'}],
    ['api\u00ADgithub.com', 443, {action: 'deny', reason: 'invalid_host'}],
    ['under_score.example.com', 443, {action: 'deny', reason: 'invalid_host'}],
    ['fe80::1%eth0', 443, {action: 'deny', reason: 'invalid_host'}],
    ['[192.0.2.7]', 443, {action: 'deny', reason: 'invalid_host'}],
    // Ports.
    ['api.github.com', 0, {action: 'deny', reason: 'invalid_port'}],
    ['api.github.com', 65_536, {action: 'deny', reason: 'invalid_port'}],
  ]

  for (const [host, port, expected] of table) {
    it(`${JSON.stringify(host)}:${port} → ${expected.action} (${expected.reason})`, () => {
      expect(decide(policy, host, port)).to.deep.equal(expected)
    })
  }

  describe('--dangerously-allow-all', () => {
    const table: Array<[host: string, port: number, expected: EgressDecision]> = [
      ['anything.example.org', 443, {action: 'allow', reason: 'allowed_all'}],
      ['203.0.113.9', 25, {action: 'allow', reason: 'allowed_all'}],
      ['api.github.com', 443, {action: 'allow', reason: 'allowed_by_rule', rule: 'api.github.com'}],
      ['api.github.com', 80, {action: 'allow', reason: 'allowed_all'}],
      ['evil.example.com', 443, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
      ['EVIL.example.com.', 80, {action: 'deny', reason: 'denied_by_rule', rule: 'evil.example.com'}],
      ['10.20.30.4', 22, {action: 'deny', reason: 'denied_by_rule', rule: '10.20.30.0/24'}],
      ['0x7f.1', 80, {action: 'deny', reason: 'invalid_host'}],
    ]
    for (const [host, port, expected] of table) {
      it(`${JSON.stringify(host)}:${port} → ${expected.action} (${expected.reason})`, () => {
        expect(decide(policy, host, port, {allowAll: true})).to.deep.equal(expected)
      })
    }
  })

  it('denies everything under the default policy', () => {
    expect(decide(policyOf({}), 'registry.npmjs.org', 443)).to.deep.equal({action: 'deny', reason: 'host_not_allowed'})
  })

  describe('destinations', () => {
    it('normalises names, addresses and IPv4-mapped addresses', () => {
      expect(parseDestination('WWW.Bücher.Example.')).to.deep.equal({kind: 'name', host: 'www.xn--bcher-kva.example'})
      expect(parseDestination('[2001:DB8::0:1]')).to.deep.equal({kind: 'ip', host: '2001:db8::1', family: 6})
      expect(parseDestination('::ffff:7f00:1')).to.deep.equal({kind: 'ip', host: '127.0.0.1', family: 4})
      expect(parseDestination('127.0.0.1')).to.deep.equal({kind: 'ip', host: '127.0.0.1', family: 4})
    })
  })
})
