import {expect} from 'chai'

import {ProtocolError} from '../../src/egress/head-reader.js'
import {checkHostHeader, forwardedHead, parseAbsoluteTarget, parseAuthority, parseRequestHead} from '../../src/egress/http-head.js'

function head(text: string): Buffer {
  return Buffer.from(text, 'latin1')
}

function refusal(run: () => unknown): ProtocolError {
  try {
    run()
  } catch (error) {
    expect(error).to.be.instanceOf(ProtocolError)
    return error as ProtocolError
  }
  throw new Error('expected a ProtocolError')
}

describe('HTTP request heads', () => {
  it('reads authorities, with IPv6 in brackets and a default port only where one exists', () => {
    expect(parseAuthority('example.com:443')).to.deep.equal({host: 'example.com', port: 443})
    expect(parseAuthority('[2001:db8::1]:8443')).to.deep.equal({host: '[2001:db8::1]', port: 8443})
    expect(parseAuthority('example.com', 80)).to.deep.equal({host: 'example.com', port: 80})
    expect(parseAuthority('example.com:99999')).to.deep.equal({host: 'example.com', port: 99_999})
    expect(refusal(() => parseAuthority('example.com')).reason).to.equal('malformed_request')
    expect(refusal(() => parseAuthority('2001:db8::1:443')).message).to.include('brackets')
    expect(refusal(() => parseAuthority('example.com:https')).reason).to.equal('malformed_request')
  })

  it('splits an absolute http:// target into authority and origin-form path', () => {
    expect(parseAbsoluteTarget('HTTP://Example.com')).to.deep.include({authorityText: 'Example.com', authority: {host: 'Example.com', port: 80}, path: '/'})
    expect(parseAbsoluteTarget('http://example.com:8080?q=1')).to.deep.include({path: '/?q=1'})
    expect(parseAbsoluteTarget('http://example.com/a/b?c')).to.deep.include({path: '/a/b?c'})
    expect(refusal(() => parseAbsoluteTarget('https://example.com/')).reason).to.equal('unsupported_request')
    expect(refusal(() => parseAbsoluteTarget('/relative')).reason).to.equal('unsupported_request')
    expect(refusal(() => parseAbsoluteTarget('http://user:pw@example.com/')).reason).to.equal('malformed_request')
  })

  it('accepts a Host header only when it names the same destination', () => {
    const target = parseAbsoluteTarget('http://api.example.com/')
    const withHost = (value: string) => parseRequestHead(head(`GET http://api.example.com/ HTTP/1.1\r\nHost: ${value}\r\n\r\n`))
    expect(() => checkHostHeader(withHost('API.Example.com.'), target)).to.not.throw()
    expect(() => checkHostHeader(withHost('api.example.com:80'), target)).to.not.throw()
    expect(refusal(() => checkHostHeader(withHost('api.example.com:8080'), target)).reason).to.equal('host_mismatch')
    expect(refusal(() => checkHostHeader(withHost('evil.example.com'), target)).reason).to.equal('host_mismatch')
    const twice = parseRequestHead(head('GET http://api.example.com/ HTTP/1.1\r\nHost: api.example.com\r\nHost: evil.example.com\r\n\r\n'))
    expect(refusal(() => checkHostHeader(twice, target)).reason).to.equal('malformed_request')
  })

  it('refuses bare LF, folded lines and control characters', () => {
    for (const bad of [
      'GET http://a.example/ HTTP/1.1\r\nX: a\nHost: b\r\n\r\n',
      'GET http://a.example/ HTTP/1.1\r\nX: a\r\n folded\r\n\r\n',
      'GET http://a.example/ HTTP/1.1\r\nX: a\u0000b\r\n\r\n',
      'GET http://a.example/ HTTP/2.0\r\n\r\n',
      'GET  http://a.example/ HTTP/1.1\r\n\r\n',
      'GET http://a.example/ HTTP/1.1\r\n: empty\r\n\r\n',
    ]) {
      expect(refusal(() => parseRequestHead(head(bad))).reason, JSON.stringify(bad)).to.equal('malformed_request')
    }
  })

  it('forwards the request without hop-by-hop or Proxy-* headers, one request per connection', () => {
    const request = parseRequestHead(
      head('GET http://a.example/x?y HTTP/1.1\r\nProxy-Authorization: Basic eA==\r\nConnection: keep-alive, X-Secret\r\nX-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nUpgrade: h2c\r\nAccept: */*\r\n\r\n'),
    )
    expect(forwardedHead(request, parseAbsoluteTarget(request.target))).to.equal('GET /x?y HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nConnection: close\r\n\r\n')
  })
})
