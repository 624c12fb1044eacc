import {isIPv6} from 'node:net'
import {domainToASCII} from 'node:url'

/** What a host pattern in an allow or deny rule stands for. */
export type HostKind = 'cidr' | 'ip' | 'name' | 'wildcard'

/** A host pattern that cannot be used; the message reads well after a path (`allow[0].host: …`). */
export class HostPatternError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'HostPatternError'
  }
}

/**
 * A parsed pattern. Addresses are 16 bytes, an IPv4 address as its IPv4-mapped
 * IPv6 form (::ffff:a.b.c.d), so `10.0.0.0/8` also covers `[::ffff:10.0.0.1]`.
 */
type HostPattern =
  | {kind: 'cidr'; text: string; address: Uint8Array; bits: number}
  | {kind: 'ip'; text: string; address: Uint8Array}
  | {kind: 'name'; text: string}
  | {kind: 'wildcard'; text: string; suffix: string}

const IPV4_MAPPED_PREFIX = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
const MAX_NAME_LENGTH = 253
const MAX_LABEL_LENGTH = 63

/**
 * The canonical text of a host pattern: a DNS name (lower case, punycode, no
 * trailing dot), a wildcard `*.example.com`, an IP address or a CIDR.
 * Throws HostPatternError saying what is wrong and how to write it.
 */
export function normalizeHostPattern(raw: string): string {
  return parseHostPattern(raw).text
}

export function hostKind(pattern: string): HostKind {
  return parseHostPattern(pattern).kind
}

/**
 * Whether a destination host (a name or an IP literal, as a client asked for
 * it) is covered by `pattern`. A name matches only name and wildcard patterns
 * and an IP literal only IP and CIDR patterns. An invalid host matches nothing.
 */
export function hostMatches(pattern: string, host: string): boolean {
  const rule = parseHostPattern(pattern)
  const target = parseDestination(host)
  if (target === undefined) return false
  switch (rule.kind) {
    case 'name': {
      return target.kind === 'name' && target.text === rule.text
    }
    case 'wildcard': {
      return target.kind === 'name' && target.text.endsWith(rule.suffix)
    }
    case 'ip': {
      return target.kind === 'ip' && samePrefix(target.address, rule.address, 128)
    }
    case 'cidr': {
      return target.kind === 'ip' && samePrefix(target.address, rule.address, rule.bits)
    }
  }
}

/** Whether the IP literal `ip` lies in `cidr`; false when `ip` is not an IP address. */
export function ipInCidr(ip: string, cidr: string): boolean {
  const kind = hostKind(cidr)
  if (kind !== 'cidr' && kind !== 'ip') throw new HostPatternError(`${quote(cidr)} is not a CIDR (e.g. 10.0.0.0/8)`)
  return hostMatches(cidr, ip)
}

function parseDestination(host: string): HostPattern | undefined {
  try {
    const parsed = parseHostPattern(host)
    return parsed.kind === 'name' || parsed.kind === 'ip' ? parsed : undefined
  } catch (error) {
    if (error instanceof HostPatternError) return undefined
    throw error
  }
}

function parseHostPattern(raw: string): HostPattern {
  const text = raw.trim()
  if (text === '') throw new HostPatternError('must not be empty: name a host (e.g. api.github.com)')
  if (text.includes('://')) throw new HostPatternError(`${quote(raw)} is a URL: write only its host${urlHostHint(text)}`)
  if (text.includes('/')) return parseCidr(text, raw)
  if (text.startsWith('[') || text.includes(':')) return parseIPv6Literal(text, raw)
  if (looksLikeIPv4(text)) {
    const address = parseIPv4(withoutTrailingDot(text), raw)
    return {kind: 'ip', text: formatAddress(address, 4), address}
  }
  if (text === '*') throw new HostPatternError('"*" would match every host: name the hosts (e.g. *.example.com)')
  if (text.startsWith('*.')) return parseWildcard(text.slice(2), raw)
  if (text.includes('*')) throw misplacedStar(raw)
  return {kind: 'name', text: parseName(text, raw)}
}

function parseWildcard(base: string, raw: string): HostPattern {
  if (base.includes('*')) throw misplacedStar(raw)
  if (looksLikeIPv4(base)) throw new HostPatternError(`${quote(raw)}: a wildcard covers names, not addresses (use a CIDR such as 10.0.0.0/8)`)
  const name = parseName(base, raw)
  if (!name.includes('.')) {
    throw new HostPatternError(`${quote(raw)} would match every name under .${name}: a wildcard needs at least two labels after "*." (e.g. *.example.com)`)
  }
  return {kind: 'wildcard', text: `*.${name}`, suffix: `.${name}`}
}

function misplacedStar(raw: string): HostPatternError {
  return new HostPatternError(`${quote(raw)}: "*" may only be the whole first label (e.g. *.example.com)`)
}

/** Lower case, IDN → punycode, one trailing dot dropped; every label checked. */
function parseName(text: string, raw: string): string {
  if (endsInDigits(text)) throw invalidName(raw, 'the last label cannot be all digits')
  // domainToASCII answers '' for what WHATWG URL parsing refuses (spaces, bad punycode, …).
  const ascii = domainToASCII(text)
  if (ascii === '') throw invalidName(raw, 'a host name has only letters, digits, "-" and "."')
  const name = withoutTrailingDot(ascii)
  if (name.length > MAX_NAME_LENGTH) throw invalidName(raw, `longer than ${MAX_NAME_LENGTH} characters`)
  const labels = name.split('.')
  for (const label of labels) {
    if (label === '') throw invalidName(raw, 'empty label between dots')
    if (label.length > MAX_LABEL_LENGTH) throw invalidName(raw, `label "${label}" is longer than ${MAX_LABEL_LENGTH} characters`)
    if (!/^[\da-z-]+$/.test(label)) throw invalidName(raw, 'a host name has only letters, digits, "-" and "."')
    if (label.startsWith('-') || label.endsWith('-')) throw invalidName(raw, `label "${label}" starts or ends with "-"`)
  }
  // Full-width digits become ASCII ones only now.
  if (endsInDigits(name)) throw invalidName(raw, 'the last label cannot be all digits')
  return name
}

function endsInDigits(name: string): boolean {
  return /^\d+$/.test(withoutTrailingDot(name).split('.').at(-1) ?? '')
}

function invalidName(raw: string, why: string): HostPatternError {
  return new HostPatternError(`${quote(raw)} is not a valid host name (${why})`)
}

/** Dotted numbers in any spelling a resolver might accept (decimal, octal, hex, short forms). */
function looksLikeIPv4(text: string): boolean {
  return withoutTrailingDot(text)
    .split('.')
    .every((part) => /^(\d+|0x[\da-f]*)$/i.test(part))
}

/** Only canonical dotted decimal: `010.0.0.1` is 8.0.0.1 to some resolvers and 10.0.0.1 to others. */
function parseIPv4(text: string, raw: string): Uint8Array {
  const parts = text.split('.')
  if (parts.length !== 4 || !parts.every((part) => /^(0|[1-9]\d{0,2})$/.test(part))) {
    throw new HostPatternError(
      `${quote(raw)} is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)`,
    )
  }
  const octets = parts.map(Number)
  if (octets.some((octet) => octet > 255)) throw new HostPatternError(`${quote(raw)} is not an IPv4 address (each number is 0-255)`)
  return Uint8Array.from([...IPV4_MAPPED_PREFIX, ...octets])
}

function parseIPv6Literal(text: string, raw: string): HostPattern {
  const inner = withoutBrackets(text, raw)
  if (!inner.includes(':')) throw new HostPatternError(`${quote(raw)}: brackets are only for IPv6 addresses (e.g. [2001:db8::1])`)
  if (inner.includes('%')) throw new HostPatternError(`${quote(raw)}: zone indexes (%…) are not supported in policy rules`)
  const address = parseIPv6(inner)
  if (address === undefined) {
    const hostPort = /^([^:]+):(\d+)$/.exec(text)
    if (hostPort) throw new HostPatternError(`${quote(raw)} is not a host: give the port in ports (host: ${hostPort[1]}, ports: [${hostPort[2]}])`)
    throw new HostPatternError(`${quote(raw)} is not a valid IPv6 address`)
  }
  return {kind: 'ip', text: formatAddress(address, 6), address}
}

function withoutBrackets(text: string, raw: string): string {
  if (!text.startsWith('[')) return text
  if (!text.endsWith(']')) throw new HostPatternError(`${quote(raw)} is missing its closing "]"`)
  return text.slice(1, -1)
}

function parseIPv6(text: string): Uint8Array | undefined {
  if (!isIPv6(text)) return undefined
  const [head = '', tail] = text.split('::')
  const left = ipv6Groups(head)
  const right = tail === undefined ? [] : ipv6Groups(tail)
  const zeros = tail === undefined ? 0 : 8 - left.length - right.length
  const groups = [...left, ...Array.from({length: zeros}, () => 0), ...right]
  return Uint8Array.from(groups.flatMap((group) => [group >> 8, group & 0xff]))
}

/** 16-bit groups of one side of `::`; an embedded IPv4 tail counts as two groups. */
function ipv6Groups(part: string): number[] {
  if (part === '') return []
  return part.split(':').flatMap((group) => {
    if (!group.includes('.')) return [Number.parseInt(group, 16)]
    const [a = 0, b = 0, c = 0, d = 0] = group.split('.').map(Number)
    return [(a << 8) | b, (c << 8) | d]
  })
}

function parseCidr(text: string, raw: string): HostPattern {
  // Both [fd00::/8] and [fd00::]/8 are accepted.
  const unbracketed = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text
  const slash = unbracketed.lastIndexOf('/')
  const addressText = withoutBrackets(unbracketed.slice(0, slash), raw)
  const prefixText = unbracketed.slice(slash + 1)
  const family = addressText.includes(':') ? 6 : 4
  const address = family === 6 ? parseIPv6(addressText) : looksLikeIPv4(addressText) ? parseIPv4(addressText, raw) : undefined
  if (address === undefined) throw new HostPatternError(`${quote(raw)} is not a valid CIDR: ${quote(addressText)} is not an IP address`)

  const maxPrefix = family === 6 ? 128 : 32
  const prefix = /^(0|[1-9]\d*)$/.test(prefixText) ? Number(prefixText) : Number.NaN
  if (!(prefix <= maxPrefix)) throw new HostPatternError(`${quote(raw)} has an invalid prefix length "/${prefixText}" (0-${maxPrefix})`)
  if (prefix === 0) throw new HostPatternError(`${quote(raw)} would match every address: name the networks the sandbox needs`)

  const bits = family === 6 ? prefix : prefix + 96
  const network = maskTo(address, bits)
  if (!sameBytes(network, address)) {
    const fix = `${formatAddress(network, family)}/${prefix}`
    throw new HostPatternError(`${quote(raw)} has host bits set: write ${fix}, or ${formatAddress(address, family)} for the one address`)
  }
  if (prefix === maxPrefix) return {kind: 'ip', text: formatAddress(address, family), address}
  return {kind: 'cidr', text: `${formatAddress(address, family)}/${prefix}`, address, bits}
}

function formatAddress(address: Uint8Array, family: 4 | 6): string {
  if (family === 4) return [...address.subarray(12)].join('.')
  if (sameBytes(address.subarray(0, 12), Uint8Array.from(IPV4_MAPPED_PREFIX))) return `::ffff:${formatAddress(address, 4)}`
  return formatIPv6(address)
}

/** RFC 5952: lower-case hex, no leading zeros, the first longest run of two or more zero groups as `::`. */
function formatIPv6(address: Uint8Array): string {
  const groups = Array.from({length: 8}, (_, i) => ((address[2 * i] ?? 0) << 8) | (address[2 * i + 1] ?? 0))
  let best = {start: -1, length: 0}
  for (let start = 0; start < 8; start++) {
    let length = 0
    while (start + length < 8 && groups[start + length] === 0) length++
    if (length > best.length) best = {start, length}
  }
  const hex = (part: number[]): string => part.map((group) => group.toString(16)).join(':')
  if (best.length < 2) return hex(groups)
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`
}

function maskTo(address: Uint8Array, bits: number): Uint8Array {
  return address.map((byte, i) => {
    const kept = Math.min(8, Math.max(0, bits - i * 8))
    return byte & ((0xff << (8 - kept)) & 0xff)
  })
}

function samePrefix(a: Uint8Array, b: Uint8Array, bits: number): boolean {
  return sameBytes(maskTo(a, bits), maskTo(b, bits))
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((byte, i) => byte === b[i])
}

function withoutTrailingDot(text: string): string {
  return text.endsWith('.') ? text.slice(0, -1) : text
}

function urlHostHint(text: string): string {
  try {
    return ` (${new URL(text).hostname})`
  } catch {
    return ''
  }
}

function quote(text: string): string {
  return JSON.stringify(text)
}
