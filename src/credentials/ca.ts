import {createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, X509Certificate} from 'node:crypto'
import {readFile, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {createSecureContext, rootCertificates, type SecureContext} from 'node:tls'

import {issueCertificate, keyIdentifier} from './x509.js'

const CA_NAME = 'cleanroom sandbox CA'
const DAY_MS = 86_400_000
/** A CA lives a month; a grant renews it when less than a week is left, so a sandbox in use never meets an expired one. */
const CA_LIFETIME_MS = 30 * DAY_MS
const CA_RENEW_WITHIN_MS = 7 * DAY_MS
const LEAF_LIFETIME_MS = 2 * DAY_MS
const LEAF_RENEW_WITHIN_MS = DAY_MS
/** Clocks in a sandbox are the host's, but clients elsewhere in a chain may lag a little. */
const BACKDATE_MS = 3_600_000

interface StoredCa {
  key: string
  cert: string
  hosts: string[]
}

/**
 * A sandbox's own certificate authority, made by the daemon: its private key
 * stays in the sandbox's state directory (mode 0600, never mounted into the
 * sandbox); only its certificate goes in, inside the trust bundle. It is
 * limited by name constraints to the hosts the sandbox's gateway intercepts,
 * so even a leaked key could not vouch for any other name to a client that
 * checks them, and it lives a month.
 */
export class SandboxCa {
  private readonly leaves = new Map<string, {context: SecureContext; renewAt: number}>()
  private readonly leafKey: KeyObject

  private constructor(
    readonly certificate: string,
    private readonly privateKey: KeyObject,
    readonly hosts: readonly string[],
    private readonly notAfter: number,
  ) {
    this.leafKey = generateKeyPairSync('ec', {namedCurve: 'prime256v1'}).privateKey
  }

  /** The CA kept at `path`, or a new one when there is none, it expires within a week, or it does not cover `hosts`. */
  static async load(path: string, hosts: readonly string[]): Promise<{ca: SandboxCa; renewed: boolean}> {
    const stored = await readFile(path, 'utf8').then(
      (text) => JSON.parse(text) as StoredCa,
      () => undefined,
    )
    if (stored !== undefined) {
      const certificate = new X509Certificate(stored.cert)
      const notAfter = Date.parse(certificate.validTo)
      const covers = hosts.every((host) => stored.hosts.includes(host))
      if (covers && notAfter - Date.now() > CA_RENEW_WITHIN_MS) {
        return {ca: new SandboxCa(stored.cert, createPrivateKey(stored.key), stored.hosts, notAfter), renewed: false}
      }
    }
    const all = [...new Set([...(stored?.hosts ?? []), ...hosts])].sort()
    const ca = SandboxCa.create(all)
    const temp = `${path}.${process.pid}.tmp`
    const record: StoredCa = {key: ca.privateKey.export({type: 'pkcs8', format: 'pem'}) as string, cert: ca.certificate, hosts: all}
    await writeFile(temp, JSON.stringify(record), {mode: 0o600})
    await rename(temp, path)
    return {ca, renewed: true}
  }

  private static create(hosts: readonly string[]): SandboxCa {
    const {privateKey, publicKey} = generateKeyPairSync('ec', {namedCurve: 'prime256v1'})
    const now = Date.now()
    const notAfter = now + CA_LIFETIME_MS
    const certificate = issueCertificate({
      subject: CA_NAME,
      publicKey,
      issuer: {name: CA_NAME, privateKey, keyId: keyIdentifier(publicKey)},
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      hosts,
      ca: true,
    })
    return new SandboxCa(certificate, privateKey, hosts, notAfter)
  }

  /** The TLS context that presents a certificate for `host` signed by this CA (made once, renewed daily). */
  contextFor(host: string): SecureContext {
    const cached = this.leaves.get(host)
    if (cached && cached.renewAt > Date.now()) return cached.context
    const now = Date.now()
    const notAfter = Math.min(now + LEAF_LIFETIME_MS, this.notAfter)
    const cert = issueCertificate({
      subject: host,
      publicKey: createPublicKey(this.leafKey),
      issuer: {name: CA_NAME, privateKey: this.privateKey, keyId: keyIdentifier(createPublicKey(this.privateKey))},
      notBefore: new Date(now - BACKDATE_MS),
      notAfter: new Date(notAfter),
      hosts: [host],
      ca: false,
    })
    const context = createSecureContext({key: this.leafKey.export({type: 'pkcs8', format: 'pem'}), cert: cert + this.certificate})
    this.leaves.set(host, {context, renewAt: notAfter - LEAF_RENEW_WITHIN_MS})
    return context
  }
}

/** Where systems keep their bundle of trusted roots, first found wins. */
const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/ca-bundle.pem', '/etc/ssl/cert.pem']

/**
 * The trust bundle a sandbox with interception gets: the system's roots (or
 * Node's own when the system has no bundle), the extra CA files the host's
 * environment names (a TLS-inspecting corporate proxy), and the sandbox's CA.
 * Non-intercepted hosts still verify against the real roots.
 */
export async function trustBundle(sandboxCa: string, hostCaFiles: readonly string[]): Promise<string> {
  const parts: string[] = []
  let system: string | undefined
  for (const path of SYSTEM_BUNDLES) {
    system = await readFile(path, 'utf8').catch(() => undefined)
    if (system !== undefined) break
  }
  parts.push(system ?? rootCertificates.join('\n'))
  for (const file of hostCaFiles) {
    const text = await readFile(file, 'utf8').catch(() => undefined)
    if (text !== undefined && text !== system) parts.push(text)
  }
  parts.push(`# ${CA_NAME}: the credential gateway's interception (cleanroom, docs/credentials.md)\n${sandboxCa}`)
  return parts.map((part) => (part.endsWith('\n') ? part : `${part}\n`)).join('')
}

/** The roots the gateway trusts on its own upstream legs: the system's and the host's extra CA files, like a host client. */
export async function upstreamRoots(hostCaFiles: readonly string[], extra: readonly string[] = []): Promise<string[]> {
  const roots = [...rootCertificates]
  for (const path of [SYSTEM_BUNDLES[0]!, ...hostCaFiles]) {
    const text = await readFile(path, 'utf8').catch(() => undefined)
    if (text !== undefined) roots.push(...splitPem(text))
  }
  return [...new Set([...roots, ...extra])]
}

function splitPem(text: string): string[] {
  return text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []
}

export const CA_FILE = 'ca.json'
export function caPath(sandboxDir: string): string {
  return join(sandboxDir, CA_FILE)
}
