import {parseDestination} from './decide.js'
import {ProtocolError} from './head-reader.js'

/** An HTTP/1.x request head, as sent (header names keep their case). */
export interface RequestHead {
  readonly method: string
  readonly target: string
  readonly version: 'HTTP/1.0' | 'HTTP/1.1'
  readonly headers: ReadonlyArray<readonly [name: string, value: string]>
}

/** A host and port as written in a request (not yet normalised). */
export interface Authority {
  readonly host: string
  readonly port: number
}

/** An absolute-form request target split into what routes it and what the origin server sees. */
export interface AbsoluteTarget {
  readonly authorityText: string
  readonly authority: Authority
  /** Origin-form: the path and query. */
  readonly path: string
}

export const HEAD_END = '\r\n\r\n'

/** Header lines a request head may have, and how long one may be: past either, it is refused (431), not truncated. */
export const MAX_HEADER_COUNT = 256
export const MAX_HEADER_LINE_BYTES = 16 * 1024

/** Where a request's body ends: after `length` bytes, or at the last chunk of a chunked body. */
export type BodyFraming = {readonly kind: 'length'; readonly length: number} | {readonly kind: 'chunked'}

/** The characters of an HTTP token (a method, a header name) and of a header value, as RFC 9110 allows them: pattern sources, for patterns built on them. */
export const TOKEN_CHAR = "[!#$%&'*+.^_`|~\\w-]"
export const FIELD_VALUE_CHAR = '[\\t\\x20-\\x7E\\x80-\\xFF]'
export const HTTP_TOKEN = new RegExp(`^${TOKEN_CHAR}+$`)
export const HTTP_FIELD_VALUE = new RegExp(`^${FIELD_VALUE_CHAR}*$`)
const REQUEST_LINE = /^(\S+) ([\x21-\x7E]+) (HTTP\/1\.[01])$/
const HTTP_DEFAULT_PORT = 80

/** Headers that describe one hop; the proxy never forwards them, nor the `Proxy-*` family. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade'])
/** Headers that say where the body ends: the proxy writes its own (bodyFraming), never the client's. */
const FRAMING_HEADERS = new Set(['content-length', 'transfer-encoding'])

/**
 * Parses a head that ends with CRLF CRLF. Bare LF, obsolete line folding and
 * control characters (NUL among them) are refused, and so are more than
 * MAX_HEADER_COUNT header lines or one longer than MAX_HEADER_LINE_BYTES.
 */
export function parseRequestHead(head: Buffer): RequestHead {
  const lines = head.toString('latin1').slice(0, -HEAD_END.length).split('\r\n')
  const [requestLine = '', ...headerLines] = lines
  const request = REQUEST_LINE.exec(requestLine)
  const [, method = '', target = '', version] = request ?? []
  if (!HTTP_TOKEN.test(method) || (version !== 'HTTP/1.0' && version !== 'HTTP/1.1')) {
    throw malformed(`"${printable(requestLine)}" is not an HTTP/1.x request line`)
  }
  if (headerLines.length > MAX_HEADER_COUNT) {
    throw new ProtocolError('too_many_headers', `the request has ${headerLines.length} header lines; the proxy takes at most ${MAX_HEADER_COUNT}`)
  }
  const headers = headerLines.map((line): [string, string] => {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    if (line.length > MAX_HEADER_LINE_BYTES) {
      throw new ProtocolError('header_too_large', `the header line "${printable(line.slice(0, 64))}" is ${line.length} bytes long; the proxy takes header lines up to ${MAX_HEADER_LINE_BYTES / 1024} KiB`)
    }
    const value = line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, '')
    if (colon <= 0 || !HTTP_TOKEN.test(name) || !HTTP_FIELD_VALUE.test(value)) throw malformed(`"${printable(line)}" is not a header line`)
    return [name, value]
  })
  return {method, target, version, headers}
}

/**
 * Where the request's body ends, decided once, by the proxy, so that it and the
 * origin server cannot disagree (request smuggling): no body, `Content-Length`
 * bytes, or `Transfer-Encoding: chunked`. Anything that could be read two ways
 * is refused: both headers, either one twice, a coding other than `chunked`,
 * chunked in HTTP/1.0, a length that is not one decimal number, and either
 * name spelt with `_` (which some servers read as `-`).
 */
export function bodyFraming(request: RequestHead): BodyFraming {
  const framing = request.headers.filter(([name]) => FRAMING_HEADERS.has(name.toLowerCase().replaceAll('_', '-')))
  const lengths = framing.filter(([name]) => name.toLowerCase().replaceAll('_', '-') === 'content-length')
  const codings = framing.filter(([name]) => name.toLowerCase().replaceAll('_', '-') === 'transfer-encoding')
  const underscored = framing.find(([name]) => name.includes('_'))
  if (underscored) throw ambiguous(`the header "${printable(underscored[0])}" is spelt with "_": send Content-Length or Transfer-Encoding`)
  if (lengths.length > 0 && codings.length > 0) throw ambiguous('the request has both Content-Length and Transfer-Encoding: send one')
  if (codings.length > 1) throw ambiguous('the request has more than one Transfer-Encoding header')
  if (lengths.length > 1) throw ambiguous('the request has more than one Content-Length header')
  const [coding] = codings
  if (coding !== undefined) {
    if (request.version === 'HTTP/1.0') throw ambiguous('an HTTP/1.0 request cannot be sent with Transfer-Encoding')
    if (coding[1].toLowerCase() !== 'chunked') {
      throw ambiguous(`Transfer-Encoding "${printable(coding[1])}" is not "chunked": the proxy forwards request bodies framed by Content-Length or by chunked encoding only`)
    }
    return {kind: 'chunked'}
  }
  const [length] = lengths
  if (length === undefined) return {kind: 'length', length: 0}
  if (!/^\d{1,15}$/.test(length[1])) throw ambiguous(`Content-Length "${printable(length[1])}" is not one decimal number`)
  return {kind: 'length', length: Number(length[1])}
}

/** `host:port` or `[v6]:port`; the port may be left out only when there is a default. */
export function parseAuthority(text: string, defaultPort?: number): Authority {
  const bracketed = /^(\[[^\]]*\])(?::(.*))?$/.exec(text)
  if (!bracketed && text.split(':').length > 2) throw malformed(`"${printable(text)}": write an IPv6 address in brackets ([2001:db8::1]:443)`)
  const [host = '', portText] = bracketed ? [bracketed[1], bracketed[2]] : splitOnce(text, ':')
  if (portText === undefined || portText === '') {
    if (defaultPort === undefined) throw malformed(`"${printable(text)}" has no port (host:port)`)
    return {host, port: defaultPort}
  }
  if (!/^\d{1,5}$/.test(portText)) throw malformed(`"${printable(text)}" has no valid port`)
  return {host, port: Number(portText)}
}

/** The authority and origin-form path of an `http://` absolute-form target. */
export function parseAbsoluteTarget(target: string): AbsoluteTarget {
  const scheme = /^([a-z][\d+.a-z-]*):\/\//i.exec(target)?.[1]?.toLowerCase()
  if (scheme === 'https') throw unsupported('https:// URLs go through a CONNECT tunnel (set HTTPS_PROXY), not as a forwarded request')
  if (scheme !== 'http') {
    throw unsupported(`"${printable(target)}" is not an absolute http:// URL: this is a proxy (send GET http://host/path, or CONNECT host:port)`)
  }
  const rest = target.slice('http://'.length)
  const end = rest.search(/[/?#]/)
  const authorityText = end === -1 ? rest : rest.slice(0, end)
  const path = end === -1 ? '/' : rest.slice(end)
  if (authorityText.includes('@')) throw malformed('credentials in the URL are not forwarded: send them in a header')
  if (path.includes('#')) throw malformed(`"${printable(target)}": a request target has no fragment`)
  return {authorityText, authority: parseAuthority(authorityText, HTTP_DEFAULT_PORT), path: path.startsWith('?') ? `/${path}` : path}
}

/**
 * Refuses a Host header that names another destination than the absolute
 * URI, so that nothing downstream can route by it; at most one Host header.
 */
export function checkHostHeader(request: RequestHead, target: AbsoluteTarget): void {
  const hosts = request.headers.filter(([name]) => name.toLowerCase() === 'host')
  if (hosts.length > 1) throw malformed('more than one Host header')
  const [header] = hosts
  if (header === undefined) return
  let claimed: Authority
  try {
    claimed = parseAuthority(header[1], HTTP_DEFAULT_PORT)
  } catch {
    throw mismatch(header[1], target.authorityText)
  }
  if (sameHost(claimed.host, target.authority.host) && claimed.port === target.authority.port) return
  throw mismatch(header[1], target.authorityText)
}

/**
 * The head sent to the origin server: origin-form request line, hop-by-hop
 * and `Proxy-*` headers (and those named by Connection) removed, Host added
 * when the client sent none, the body's framing as the proxy forwards it
 * (`framing`, never the client's own headers: a `Connection: Content-Length`
 * cannot drop it), and `Connection: close`, because the connection to the
 * origin serves this one request only.
 */
export function forwardedHead(request: RequestHead, target: AbsoluteTarget, framing: BodyFraming): string {
  const named = request.headers
    .filter(([name]) => name.toLowerCase() === 'connection')
    .flatMap(([, value]) => value.split(',').map((token) => token.trim().toLowerCase()))
  const dropped = new Set([...HOP_BY_HOP, ...named, ...FRAMING_HEADERS])
  const kept = request.headers.filter(([name]) => !dropped.has(name.toLowerCase()) && !name.toLowerCase().startsWith('proxy-'))
  const host: Array<readonly [string, string]> = kept.some(([name]) => name.toLowerCase() === 'host') ? [] : [['Host', target.authorityText]]
  const lines = [`${request.method} ${target.path} ${request.version}`, ...[...host, ...kept].map(([name, value]) => `${name}: ${value}`), ...framingLines(request, framing), 'Connection: close']
  return `${lines.join('\r\n')}${HEAD_END}`
}

/** The framing header the origin gets: the length when the client sent one (or has a body), chunked when it chunked. */
function framingLines(request: RequestHead, framing: BodyFraming): string[] {
  if (framing.kind === 'chunked') return ['Transfer-Encoding: chunked']
  const sentLength = request.headers.some(([name]) => name.toLowerCase() === 'content-length')
  return sentLength || framing.length > 0 ? [`Content-Length: ${framing.length}`] : []
}

function sameHost(a: string, b: string): boolean {
  const normalised = (host: string): string => parseDestination(host)?.host ?? host
  return normalised(a) === normalised(b)
}

function splitOnce(text: string, separator: string): [string, string | undefined] {
  const at = text.indexOf(separator)
  return at === -1 ? [text, undefined] : [text.slice(0, at), text.slice(at + 1)]
}

function malformed(message: string): ProtocolError {
  return new ProtocolError('malformed_request', message)
}

function ambiguous(message: string): ProtocolError {
  return new ProtocolError('ambiguous_body_length', message)
}

function unsupported(message: string): ProtocolError {
  return new ProtocolError('unsupported_request', message)
}

function mismatch(header: string, authority: string): ProtocolError {
  return new ProtocolError('host_mismatch', `the Host header "${printable(header)}" does not name the request's destination ${authority}`)
}

/** Request text for a one-line message: control characters escaped, long text cut. */
export function printable(text: string): string {
  const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text
  return JSON.stringify(shown).slice(1, -1)
}
