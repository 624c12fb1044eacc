import {expect} from 'chai'

import {HostPatternError, hostKind, hostMatches, ipInCidr, normalizeHostPattern} from '../../src/policy/host.js'

function refusal(raw: string): string {
  try {
    normalizeHostPattern(raw)
  } catch (error) {
    expect(error).to.be.instanceOf(HostPatternError)
    return (error as HostPatternError).message
  }
  throw new Error(`expected ${JSON.stringify(raw)} to be refused`)
}

describe('host patterns', () => {
  describe('normalisation', () => {
    const canonical: Array<[string, string]> = [
      ['API.GitHub.com.', 'api.github.com'],
      ['  api.github.com  ', 'api.github.com'],
      ['Bücher.example', 'xn--bcher-kva.example'],
      ['ｅｘａｍｐｌｅ.com', 'example.com'],
      ['localhost', 'localhost'],
      ['*.Example.COM.', '*.example.com'],
      ['*.bücher.example', '*.xn--bcher-kva.example'],
      ['10.0.0.1', '10.0.0.1'],
      ['0.0.0.0', '0.0.0.0'],
      ['2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
      ['[2001:db8:0:0:0:0:0:1]', '2001:db8::1'],
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['::FFFF:1.2.3.4', '::ffff:1.2.3.4'],
      ['::ffff:102:304', '::ffff:1.2.3.4'],
      ['10.0.0.0/8', '10.0.0.0/8'],
      ['192.0.2.7/32', '192.0.2.7'],
      ['FD00::/8', 'fd00::/8'],
      ['[fd00::]/8', 'fd00::/8'],
      ['[fd00::/8]', 'fd00::/8'],
      ['2001:db8::1/128', '2001:db8::1'],
    ]
    for (const [raw, expected] of canonical) {
      it(`${JSON.stringify(raw)} → ${expected}`, () => {
        expect(normalizeHostPattern(raw)).to.equal(expected)
        expect(normalizeHostPattern(expected), 'canonical text is a fixed point').to.equal(expected)
      })
    }
  })

  describe('refusals', () => {
    const refused: Array<[string, string]> = [
      ['exa mple.com', '"exa mple.com" is not a valid host name (a host name has only letters, digits, "-" and ".")'],
      ['a_b.example', '"a_b.example" is not a valid host name (a host name has only letters, digits, "-" and ".")'],
      ['-a.example', '"-a.example" is not a valid host name (label "-a" starts or ends with "-")'],
      ['a..example', '"a..example" is not a valid host name (empty label between dots)'],
      ['example.com..', '"example.com.." is not a valid host name (empty label between dots)'],
      ['a.123', '"a.123" is not a valid host name (the last label cannot be all digits)'],
      [`${'a'.repeat(64)}.example`, `"${'a'.repeat(64)}.example" is not a valid host name (label "${'a'.repeat(64)}" is longer than 63 characters)`],
      [`${'abcdefghi.'.repeat(26)}com`, `"${'abcdefghi.'.repeat(26)}com" is not a valid host name (longer than 253 characters)`],
      ['', 'must not be empty: name a host (e.g. api.github.com)'],
      ['*', '"*" would match every host: name the hosts (e.g. *.example.com)'],
      ['*.com', '"*.com" would match every name under .com: a wildcard needs at least two labels after "*." (e.g. *.example.com)'],
      ['a.*.com', '"a.*.com": "*" may only be the whole first label (e.g. *.example.com)'],
      ['*example.com', '"*example.com": "*" may only be the whole first label (e.g. *.example.com)'],
      ['*.*.example.com', '"*.*.example.com": "*" may only be the whole first label (e.g. *.example.com)'],
      ['*.10.0.0', '"*.10.0.0": a wildcard covers names, not addresses (use a CIDR such as 10.0.0.0/8)'],
      ['010.0.0.1', '"010.0.0.1" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)'],
      ['0x7f.1', '"0x7f.1" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)'],
      ['127.1', '"127.1" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)'],
      ['2130706433', '"2130706433" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)'],
      ['256.0.0.1', '"256.0.0.1" is not an IPv4 address (each number is 0-255)'],
      ['2001:db8::g', '"2001:db8::g" is not a valid IPv6 address'],
      ['[2001:db8::1', '"[2001:db8::1" is missing its closing "]"'],
      ['[10.0.0.1]', '"[10.0.0.1]": brackets are only for IPv6 addresses (e.g. [2001:db8::1])'],
      ['fe80::1%eth0', '"fe80::1%eth0": zone indexes (%…) are not supported in policy rules'],
      ['github.com:443', '"github.com:443" is not a host: give the port in ports (host: github.com, ports: [443])'],
      ['https://github.com/acme', '"https://github.com/acme" is a URL: write only its host (github.com)'],
      ['10.0.0.1/8', '"10.0.0.1/8" has host bits set: write 10.0.0.0/8, or 10.0.0.1 for the one address'],
      ['fd00::1/8', '"fd00::1/8" has host bits set: write fd00::/8, or fd00::1 for the one address'],
      ['10.0.0.0/33', '"10.0.0.0/33" has an invalid prefix length "/33" (0-32)'],
      ['10.0.0.0/08', '"10.0.0.0/08" has an invalid prefix length "/08" (0-32)'],
      ['fd00::/129', '"fd00::/129" has an invalid prefix length "/129" (0-128)'],
      ['0.0.0.0/0', '"0.0.0.0/0" would match every address: name the networks the sandbox needs'],
      ['::/0', '"::/0" would match every address: name the networks the sandbox needs'],
      ['example.com/24', '"example.com/24" is not a valid CIDR: "example.com" is not an IP address'],
      ['010.0.0.0/8', '"010.0.0.0/8" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)'],
    ]
    for (const [raw, message] of refused) {
      it(`refuses ${JSON.stringify(raw)}`, () => {
        expect(refusal(raw)).to.equal(message)
      })
    }
  })

  it('names the kind of a pattern', () => {
    expect(hostKind('API.example.com')).to.equal('name')
    expect(hostKind('*.example.com')).to.equal('wildcard')
    expect(hostKind('10.0.0.1')).to.equal('ip')
    expect(hostKind('[::1]')).to.equal('ip')
    expect(hostKind('10.0.0.1/32')).to.equal('ip')
    expect(hostKind('10.0.0.0/8')).to.equal('cidr')
    expect(hostKind('fd00::/8')).to.equal('cidr')
  })

  describe('matching', () => {
    it('matches a name exactly, after normalising the destination', () => {
      expect(hostMatches('api.github.com', 'API.GitHub.com.')).to.equal(true)
      expect(hostMatches('xn--bcher-kva.example', 'bücher.example')).to.equal(true)
      expect(hostMatches('api.github.com', 'github.com')).to.equal(false)
      expect(hostMatches('api.github.com', 'x.api.github.com')).to.equal(false)
    })

    it('matches a wildcard against subdomains at any depth, never the apex', () => {
      expect(hostMatches('*.example.com', 'a.example.com')).to.equal(true)
      expect(hostMatches('*.example.com', 'a.b.Example.com.')).to.equal(true)
      expect(hostMatches('*.example.com', 'example.com')).to.equal(false)
      expect(hostMatches('*.example.com', 'badexample.com')).to.equal(false)
      expect(hostMatches('*.example.com', 'example.com.evil.net')).to.equal(false)
    })

    it('matches IP literals only with IP and CIDR patterns', () => {
      expect(hostMatches('10.0.0.1', '10.0.0.1')).to.equal(true)
      expect(hostMatches('10.0.0.0/8', '10.255.0.1')).to.equal(true)
      expect(hostMatches('2001:db8::1', '[2001:DB8:0::1]')).to.equal(true)
      expect(hostMatches('*.example.com', '10.0.0.1')).to.equal(false)
      expect(hostMatches('10.0.0.0/8', 'ten.example.com')).to.equal(false)
    })

    it('treats an IPv4-mapped IPv6 address as its IPv4 address', () => {
      expect(hostMatches('10.0.0.0/8', '::ffff:10.1.2.3')).to.equal(true)
      expect(hostMatches('10.0.0.0/8', '[::ffff:a01:203]')).to.equal(true)
      expect(hostMatches('::ffff:10.1.2.3', '10.1.2.3')).to.equal(true)
    })

    it('matches nothing for a destination that is not a valid host', () => {
      expect(hostMatches('*.example.com', 'a b.example.com')).to.equal(false)
      expect(hostMatches('10.0.0.0/8', '010.0.0.1')).to.equal(false)
      expect(hostMatches('*.example.com', '*.example.com')).to.equal(false)
    })

    it('throws for an invalid pattern rather than matching nothing silently', () => {
      expect(() => hostMatches('a.*.com', 'a.b.com')).to.throw(HostPatternError)
    })

    it('tests IPs against CIDRs of both families', () => {
      expect(ipInCidr('10.1.2.3', '10.0.0.0/8')).to.equal(true)
      expect(ipInCidr('11.0.0.1', '10.0.0.0/8')).to.equal(false)
      expect(ipInCidr('192.168.1.255', '192.168.1.0/24')).to.equal(true)
      expect(ipInCidr('192.168.2.0', '192.168.1.0/24')).to.equal(false)
      expect(ipInCidr('172.31.255.255', '172.16.0.0/12')).to.equal(true)
      expect(ipInCidr('172.32.0.0', '172.16.0.0/12')).to.equal(false)
      expect(ipInCidr('fd12:3456::1', 'fd00::/8')).to.equal(true)
      expect(ipInCidr('fe80::1', 'fd00::/8')).to.equal(false)
      expect(ipInCidr('2001:db8::1', '10.0.0.0/8')).to.equal(false)
      expect(ipInCidr('example.com', '10.0.0.0/8')).to.equal(false)
      expect(() => ipInCidr('10.0.0.1', '*.example.com')).to.throw(HostPatternError, 'is not a CIDR')
    })
  })
})
