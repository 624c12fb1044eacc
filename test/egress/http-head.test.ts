import {expect} from 'chai'

import {ProtocolError} from '../../src/egress/head-reader.js'
import {bodyFraming, checkHostHeader, forwardedHead, MAX_HEADER_COUNT, parseAbsoluteTarget, parseAuthority, parseRequestHead} from '../../src/egress/http-head.js'

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
    expect(forwardedHead(request, parseAbsoluteTarget(request.target), bodyFraming(request))).to.equal('GET /x?y HTTP/1.1\r\nHost: a.example\r\nAccept: */*\r\nConnection: close\r\n\r\n')
  })

  it('refuses NUL in the request line, a header name, a header value and the Host', () => {
    for (const bad of [
      'GET http://a.example/\u0000 HTTP/1.1\r\n\r\n',
      'GET\u0000 http://a.example/ HTTP/1.1\r\n\r\n',
      'CONNECT a.example\u0000.b.example:443 HTTP/1.1\r\n\r\n',
      'GET http://a.example/ HTTP/1.1\r\nX-\u0000: 1\r\n\r\n',
      'GET http://a.example/ HTTP/1.1\r\nHost: a.example\u0000.evil.example\r\n\r\n',
    ]) {
      expect(refusal(() => parseRequestHead(head(bad))).reason, JSON.stringify(bad)).to.equal('malformed_request')
    }
  })

  it('refuses more header lines than it takes, and a header line over 16 KiB, each with its own reason', () => {
    const many = `GET http://a.example/ HTTP/1.1\r\n${'a:1\r\n'.repeat(MAX_HEADER_COUNT + 1)}\r\n`
    expect(refusal(() => parseRequestHead(head(many))).reason).to.equal('too_many_headers')
    expect(() => parseRequestHead(head(`GET http://a.example/ HTTP/1.1\r\n${'a:1\r\n'.repeat(MAX_HEADER_COUNT)}\r\n`))).to.not.throw()
    const long = refusal(() => parseRequestHead(head(`GET http://a.example/ HTTP/1.1\r\nX-Long: ${'x'.repeat(16 * 1024)}\r\n\r\n`)))
    expect([long.reason, long.message]).to.deep.equal(['header_too_large', `the header line "X-Long: ${'x'.repeat(56)}" is ${16 * 1024 + 8} bytes long; the proxy takes header lines up to 16 KiB`])
  })

  it('frames a body by Content-Length or chunked, and refuses every head that could be read two ways', () => {
    const framing = (headers: string, version = 'HTTP/1.1') => bodyFraming(parseRequestHead(head(`POST http://a.example/ ${version}\r\n${headers}\r\n`)))
    expect(framing('')).to.deep.equal({kind: 'length', length: 0})
    expect(framing('Content-Length: 12\r\n')).to.deep.equal({kind: 'length', length: 12})
    expect(framing('Transfer-Encoding: chunked\r\n')).to.deep.equal({kind: 'chunked'})
    expect(framing('transfer-encoding:   CHUNKED  \r\n')).to.deep.equal({kind: 'chunked'})
    for (const ambiguous of [
      'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n',
      'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n',
      'Content-Length: 0\r\nContent-Length: 60\r\n',
      'Content-Length: 5\r\nContent-Length: 5\r\n',
      'Content-Length: 5, 5\r\n',
      'Content-Length: +5\r\n',
      'Content-Length: 0x5\r\n',
      'Transfer-Encoding: chunked, identity\r\n',
      'Transfer-Encoding: identity, chunked\r\n',
      'Transfer-Encoding: xchunked\r\n',
      'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n',
      'Transfer-Encoding: gzip\r\n',
      'Transfer_Encoding: chunked\r\n',
      'Content_Length: 5\r\n',
    ]) {
      expect(refusal(() => framing(ambiguous)).reason, JSON.stringify(ambiguous)).to.equal('ambiguous_body_length')
    }
    expect(refusal(() => framing('Transfer-Encoding: chunked\r\n', 'HTTP/1.0')).reason).to.equal('ambiguous_body_length')
    for (const malformed of ['Transfer-Encoding : chunked\r\n', 'X: 1\r\n Transfer-Encoding: chunked\r\n', 'Transfer-Encoding:\u0000chunked\r\n']) {
      expect(refusal(() => framing(malformed)).reason, JSON.stringify(malformed)).to.equal('malformed_request')
    }
  })

  it('sends the origin the framing the proxy reads, never the client\'s own framing headers', () => {
    const forwarded = (text: string) => {
      const request = parseRequestHead(head(text))
      return forwardedHead(request, parseAbsoluteTarget(request.target), bodyFraming(request))
    }
    expect(forwarded('POST http://a.example/ HTTP/1.1\r\ncontent-length: 3\r\nConnection: Content-Length\r\n\r\n')).to.equal(
      'POST / HTTP/1.1\r\nHost: a.example\r\nContent-Length: 3\r\nConnection: close\r\n\r\n',
    )
    expect(forwarded('POST http://a.example/ HTTP/1.1\r\nTransfer-Encoding:  chunked\r\nConnection: transfer-encoding\r\n\r\n')).to.equal(
      'POST / HTTP/1.1\r\nHost: a.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
    )
  })
})
