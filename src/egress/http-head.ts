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

const TOKEN = /^[!#$%&'*+.^_`|~\w-]+$/
const REQUEST_LINE = /^(\S+) ([\x21-\x7E]+) (HTTP\/1\.[01])$/
const HEADER_VALUE = /^[\t\x20-\x7E\x80-\xFF]*$/
const HTTP_DEFAULT_PORT = 80

/** Headers that describe one hop; the proxy never forwards them, nor the `Proxy-*` family. */
const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'proxy-connection', 'te', 'trailer', 'upgrade'])

/** Parses a head that ends with CRLF CRLF. Bare LF, obsolete line folding and control characters are refused. */
export function parseRequestHead(head: Buffer): RequestHead {
  const lines = head.toString('latin1').slice(0, -HEAD_END.length).split('\r\n')
  const [requestLine = '', ...headerLines] = lines
  const request = REQUEST_LINE.exec(requestLine)
  const [, method = '', target = '', version] = request ?? []
  if (!TOKEN.test(method) || (version !== 'HTTP/1.0' && version !== 'HTTP/1.1')) {
    throw malformed(`"${printable(requestLine)}" is not an HTTP/1.x request line`)
  }
  const headers = headerLines.map((line): [string, string] => {
    const colon = line.indexOf(':')
    const name = line.slice(0, colon)
    const value = line.slice(colon + 1).replace(/^[\t ]+|[\t ]+$/g, '')
    if (colon <= 0 || !TOKEN.test(name) || !HEADER_VALUE.test(value)) throw malformed(`"${printable(line)}" is not a header line`)
    return [name, value]
  })
  return {method, target, version, headers}
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
 * when the client sent none, and `Connection: close`, because the connection
 * to the origin serves this one request's destination only.
 */
export function forwardedHead(request: RequestHead, target: AbsoluteTarget): string {
  const named = request.headers
    .filter(([name]) => name.toLowerCase() === 'connection')
    .flatMap(([, value]) => value.split(',').map((token) => token.trim().toLowerCase()))
  const dropped = new Set([...HOP_BY_HOP, ...named])
  const kept = request.headers.filter(([name]) => !dropped.has(name.toLowerCase()) && !name.toLowerCase().startsWith('proxy-'))
  const host: Array<readonly [string, string]> = kept.some(([name]) => name.toLowerCase() === 'host') ? [] : [['Host', target.authorityText]]
  const lines = [`${request.method} ${target.path} ${request.version}`, ...[...host, ...kept].map(([name, value]) => `${name}: ${value}`), 'Connection: close']
  return `${lines.join('\r\n')}${HEAD_END}`
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

function unsupported(message: string): ProtocolError {
  return new ProtocolError('unsupported_request', message)
}

function mismatch(header: string, authority: string): ProtocolError {
  return new ProtocolError('host_mismatch', `the Host header "${printable(header)}" does not name the request's destination ${authority}`)
}

/** Request text for a one-line message: control characters escaped, long text cut. */
function printable(text: string): string {
  const shown = text.length > 200 ? `${text.slice(0, 200)}…` : text
  return JSON.stringify(shown).slice(1, -1)
}
