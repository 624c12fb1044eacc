import {expect} from 'chai'

import {getHead, proxyAnswer, via} from '../sandbox.js'
import {OTHER_HTTP} from './shared.js'
import type {EgressSuite} from './suite.js'

/** What the main policy allows gets through, and is audited with the rule that allowed it. */
export function allowedDestinations(suite: EgressSuite): void {
  describe('allowed destinations', () => {
    it('an exact host name (absolute-form and CONNECT), resolved by the proxy', async () => {
      const {A} = suite.ports()
      const [absolute, tunnel] = await suite.main.probe([via.get(`http://allowed.test:${A}/exact`), via.tunnel(`allowed.test:${A}`, getHead('/tunnel', `allowed.test:${A}`))])
      expect(proxyAnswer(absolute!)).to.deep.include({status: 200, body: 'hello from allowed: GET /exact'})
      expect(tunnel!.received).to.include('hello from allowed: GET /tunnel')
      if (await suite.main.has('curl')) {
        const curl = await suite.main.sh(`curl -sS -m 5 http://allowed.test:${A}/curl`)
        expect(curl.stdout, curl.stderr).to.equal('hello from allowed: GET /curl')
      }
      expect(suite.allowedWeb.requests.map((request) => request.url)).to.include.members(['/exact', '/tunnel'])
      const [line] = await suite.main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', rule: 'allowed.test', resolved_ip: '127.0.0.1', protocol: 'http'}])
      expect(line!.bytes_up).to.be.above(0)
      expect(line!.bytes_down).to.be.above(0)
    })

    it('a wildcard host', async () => {
      const {A} = suite.ports()
      const result = await suite.main.probeOne(via.tunnel(`api.allowed.test:${A}`, getHead('/wildcard', `api.allowed.test:${A}`)))
      expect(result.received).to.include('hello from allowed: GET /wildcard')
      await suite.main.expectAudit([{host: 'api.allowed.test', port: A, action: 'allow', reason: 'allowed_by_wildcard', rule: '*.allowed.test'}])
    })

    it('a CIDR rule (the other host by address)', async () => {
      const result = await suite.main.probeOne(via.tunnel(`${suite.other.address}:${OTHER_HTTP}`, getHead('/cidr', suite.other.address)))
      expect(result.received).to.include('hello from the other host: GET /cidr')
      expect(suite.other.since(suite.otherMark).filter((event) => event.kind === 'request')).to.deep.equal([{kind: 'request', port: OTHER_HTTP, method: 'GET', url: '/cidr', host: suite.other.address}])
      await suite.main.expectAudit([{host: suite.other.address, port: OTHER_HTTP, action: 'allow', reason: 'allowed_by_cidr', rule: suite.other.cidr}])
    })

    it('the other host by name', async () => {
      const result = await suite.main.probeOne(via.get(`http://other.test:${OTHER_HTTP}/named`))
      expect(proxyAnswer(result)).to.deep.include({status: 200, body: 'hello from the other host: GET /named'})
      await suite.main.expectAudit([{host: 'other.test', port: OTHER_HTTP, action: 'allow', reason: 'allowed_by_rule', resolved_ip: suite.other.address}])
    })

    it('SOCKS5 with remote DNS (the proxy resolves the name)', async () => {
      const {A} = suite.ports()
      const result = await suite.main.probeOne(via.socks('domain', 'allowed.test', A, getHead('/socks', `allowed.test:${A}`)))
      expect(result).to.deep.include({method: 0, reply: 0})
      expect(result.received).to.include('hello from allowed: GET /socks')
      if (await suite.main.has('curl')) {
        // ALL_PROXY is socks5h://: curl hands the name to the proxy.
        const curl = await suite.main.sh(`curl -sS -m 5 --proxy "$ALL_PROXY" http://allowed.test:${A}/curl-socks`)
        expect(curl.stdout, curl.stderr).to.equal('hello from allowed: GET /curl-socks')
      }
      await suite.main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', protocol: 'socks5', resolved_ip: '127.0.0.1'}])
    })

    it('git over HTTPS through the proxy (http.proxy)', async () => {
      const {T} = suite.ports()
      const clone = await suite.main.sh(`git clone -q https://allowed.test:${T}/repo.git /tmp/clone && cat /tmp/clone/README && git -C /tmp/clone log --format=%s`, {GIT_SSL_CAINFO: '/workspace/ca.pem'})
      expect(clone.stdout, clone.stderr).to.equal('cloned through the egress proxy\nfirst\n')
      expect(suite.gitTls.servernames).to.include('allowed.test')
      expect(suite.gitTls.requests.map((request) => request.url)).to.include('/repo.git/info/refs?service=git-upload-pack')
      await suite.main.expectAudit([{host: 'allowed.test', port: T, action: 'allow', reason: 'allowed_by_rule', protocol: 'connect'}])
    })
  })
}
