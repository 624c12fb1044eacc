import {createHash, type KeyObject, randomBytes, sign} from 'node:crypto'
import {isIP} from 'node:net'

/**
 * Just enough DER to issue the per-sandbox CA and its leaf certificates
 * (X.509 v3, ECDSA P-256 with SHA-256): Node can sign and parse certificates
 * but not build them, and a dependency for this much is not worth it.
 */

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  commonName: '2.5.4.3',
  organization: '2.5.4.10',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  nameConstraints: '2.5.29.30',
  authorityKeyIdentifier: '2.5.29.35',
  extKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
} as const

function length(size: number): Buffer {
  if (size < 0x80) return Buffer.from([size])
  const bytes: number[] = []
  for (let rest = size; rest > 0; rest >>= 8) bytes.unshift(rest & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), length(body.length), body])
}

const sequence = (...items: Buffer[]): Buffer => tlv(0x30, ...items)
const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items)
const octetString = (content: Buffer): Buffer => tlv(0x04, content)
const bitString = (content: Buffer): Buffer => tlv(0x03, Buffer.from([0]), content)
const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, 'utf8'))
const boolean = (value: boolean): Buffer => tlv(0x01, Buffer.from([value ? 0xff : 0]))
/** `[n] EXPLICIT`. */
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 + n, content)

function unsignedInteger(bytes: Buffer): Buffer {
  let start = 0
  while (start < bytes.length - 1 && bytes[start] === 0) start++
  const trimmed = bytes.subarray(start)
  return tlv(0x02, (trimmed[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), trimmed]) : trimmed)
}

function oid(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number)
  const bytes = [first * 40 + second]
  for (const arc of rest) {
    const groups = [arc & 0x7f]
    for (let value = Math.floor(arc / 128); value > 0; value = Math.floor(value / 128)) groups.unshift((value & 0x7f) | 0x80)
    bytes.push(...groups)
  }
  return tlv(0x06, Buffer.from(bytes))
}

/** UTCTime until 2049, GeneralizedTime after, as RFC 5280 requires. */
function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/\.\d{3}Z$/, 'Z').replaceAll(/[-:T]/g, '')
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(iso.slice(2), 'latin1')) : tlv(0x18, Buffer.from(iso, 'latin1'))
}

function name(commonName: string): Buffer {
  return sequence(set(sequence(oid(OID.organization), utf8String('cleanroom'))), set(sequence(oid(OID.commonName), utf8String(commonName))))
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return sequence(oid(id), ...(critical ? [boolean(true)] : []), octetString(value))
}

/** A dNSName, or an iPAddress for an IP literal: how a SAN or a name constraint names a host. */
function generalName(host: string, constraint: boolean): Buffer {
  const family = isIP(host)
  if (family === 0) return tlv(0x82, Buffer.from(host, 'ascii'))
  const address = family === 4 ? Buffer.from(host.split('.').map(Number)) : ipv6Bytes(host)
  // A constraint is an address and a mask: all ones, this one address.
  return tlv(0x87, constraint ? Buffer.concat([address, Buffer.alloc(address.length, 0xff)]) : address)
}

function ipv6Bytes(host: string): Buffer {
  const [head = '', tail = ''] = host.split('::')
  const groups = (part: string) => (part === '' ? [] : part.split(':').map((group) => Number.parseInt(group, 16)))
  const left = groups(head)
  const right = host.includes('::') ? groups(tail) : []
  const all = [...left, ...Array.from({length: 8 - left.length - right.length}, () => 0), ...right]
  const bytes = Buffer.alloc(16)
  for (const [i, group] of all.entries()) bytes.writeUInt16BE(group, i * 2)
  return bytes
}

/** The key identifier of a public key: SHA-1 of its SubjectPublicKeyInfo's key bits (RFC 5280 §4.2.1.2, method 1 in spirit). */
export function keyIdentifier(publicKey: KeyObject): Buffer {
  return createHash('sha1').update(publicKey.export({type: 'spki', format: 'der'})).digest()
}

export interface CertificateRequest {
  /** The subject's common name. */
  subject: string
  publicKey: KeyObject
  issuer: {name: string; privateKey: KeyObject; keyId: Buffer}
  notBefore: Date
  notAfter: Date
  /** A CA limited to these hosts (name constraints), or a leaf for them (subject alternative names). */
  hosts: readonly string[]
  ca: boolean
}

/** A signed certificate, PEM. */
export function issueCertificate(request: CertificateRequest): string {
  const algorithm = sequence(oid(OID.ecdsaWithSha256))
  const subjectKeyId = keyIdentifier(request.publicKey)
  const extensions = request.ca
    ? [
        extension(OID.basicConstraints, true, sequence(boolean(true), tlv(0x02, Buffer.from([0])))),
        // keyCertSign and cRLSign.
        extension(OID.keyUsage, true, tlv(0x03, Buffer.from([1, 0x06]))),
        extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId)),
        extension(OID.nameConstraints, true, sequence(tlv(0xa0, ...request.hosts.map((host) => sequence(generalName(host, true)))))),
      ]
    : [
        extension(OID.basicConstraints, true, sequence()),
        // digitalSignature.
        extension(OID.keyUsage, true, tlv(0x03, Buffer.from([7, 0x80]))),
        extension(OID.extKeyUsage, false, sequence(oid(OID.serverAuth))),
        extension(OID.subjectAltName, false, sequence(...request.hosts.map((host) => generalName(host, false)))),
        extension(OID.subjectKeyIdentifier, false, octetString(subjectKeyId)),
        extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, request.issuer.keyId))),
      ]
  const serial = randomBytes(16)
  serial[0] = serial[0]! & 0x7f
  const tbs = sequence(
    explicit(0, tlv(0x02, Buffer.from([2]))),
    unsignedInteger(serial),
    algorithm,
    name(request.issuer.name),
    sequence(time(request.notBefore), time(request.notAfter)),
    name(request.subject),
    request.publicKey.export({type: 'spki', format: 'der'}),
    explicit(3, sequence(...extensions)),
  )
  const signature = sign('sha256', tbs, request.issuer.privateKey)
  const der = sequence(tbs, algorithm, bitString(signature))
  const lines = der.toString('base64').match(/.{1,64}/g) ?? []
  return `-----BEGIN CERTIFICATE-----\n${lines.join('\n')}\n-----END CERTIFICATE-----\n`
}
