import {createHash} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {Agent as HttpAgent, type IncomingMessage, request as httpRequest} from 'node:http'
import {Agent as HttpsAgent, request as httpsRequest} from 'node:https'
import {rootCertificates} from 'node:tls'

import {CleanroomError, messageOf} from '../errors/index.js'
import {basicAuthorization, parseChallenge, redact, type RegistryAccess} from './auth.js'
import {MANIFEST_ACCEPT, MAX_DOCUMENT_BYTES} from './manifest.js'
import {type ImageReference, isLoopbackRegistry, registryEndpoint, repositoryName} from './reference.js'
import {readLimited} from './streams.js'

const MAX_REDIRECTS = 5
const IDLE_TIMEOUT_MS = 60_000
const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt'

export interface FetchedDocument {
  bytes: Buffer
  contentType: string | undefined
  /** sha256 of the bytes as received: the registry's own digest header is not trusted. */
  digest: string
}

/**
 * Speaks the OCI distribution API (registry v2) to one repository: manifests
 * and blobs by GET, following the registry's auth challenge — an anonymous or
 * basic-authenticated bearer token from its realm (ghcr.io, Docker Hub), or
 * basic auth — and redirects to blob storage (the Authorization header stays
 * with the registry). HTTPS with the system's CAs, plain HTTP only for
 * loopback registries and ones the runtime config marks insecure.
 */
export class RegistryClient {
  private authorization: string | undefined
  private readonly agent: HttpAgent | HttpsAgent
  readonly origin: string

  constructor(
    private readonly reference: ImageReference,
    private readonly access: RegistryAccess = {},
  ) {
    const plain = access.insecure === true || isLoopbackRegistry(reference.registry)
    this.origin = `${plain ? 'http' : 'https'}://${registryEndpoint(reference.registry)}`
    this.agent = plain ? new HttpAgent({keepAlive: true}) : new HttpsAgent({keepAlive: true, ca: trustedCas()})
    if (access.token) this.authorization = `Bearer ${access.token}`
  }

  /** A manifest or index by tag or digest, read whole (at most 4 MiB); a digest asked for must match. */
  async manifest(tagOrDigest: string, signal?: AbortSignal): Promise<FetchedDocument> {
    const path = `/v2/${this.reference.repository}/manifests/${tagOrDigest}`
    const response = await this.get(path, {accept: MANIFEST_ACCEPT}, `manifest ${tagOrDigest}`, signal)
    const bytes = await readLimited(response, MAX_DOCUMENT_BYTES, `the manifest of ${this.name}:${tagOrDigest}`)
    const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`
    if (tagOrDigest.startsWith('sha256:') && digest !== tagOrDigest) {
      throw new CleanroomError('image_invalid', `the registry sent a manifest for ${this.name}@${tagOrDigest} whose digest is ${digest}`)
    }
    return {bytes, contentType: response.headers['content-type'], digest}
  }

  /** A blob as a stream; the caller verifies its digest. */
  blob(digest: string, signal?: AbortSignal): Promise<IncomingMessage> {
    return this.get(`/v2/${this.reference.repository}/blobs/${digest}`, {}, `blob ${digest}`, signal)
  }

  close(): void {
    this.agent.destroy()
  }

  private get name(): string {
    return repositoryName(this.reference)
  }

  private async get(path: string, headers: Record<string, string>, what: string, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    let response = await this.send(new URL(path, this.origin), headers, {signal})
    if (response.statusCode === 401) {
      const challenge = response.headers['www-authenticate']
      response.resume()
      await this.authenticate(challenge, signal)
      response = await this.send(new URL(path, this.origin), headers, {signal})
    }
    const status = response.statusCode ?? 0
    if (status === 200) return response
    const detail = await errorDetail(response)
    if (status === 401 || status === 403) {
      throw new CleanroomError('registry_auth_failed', `${this.name}: the registry refused ${what} (${status}${detail})`, {
        suggestions: [`Set credentials for ${this.reference.registry} under registries: in the runtime config (cleanroom config path)`],
      })
    }
    if (status === 404) {
      throw new CleanroomError('image_not_found', `${this.name}: the registry has no ${what}${detail}`, {suggestions: ['Check the repository name and the tag or digest']})
    }
    throw new CleanroomError('registry_failed', `${this.name}: the registry answered ${status} to ${what}${detail}`)
  }

  /** Takes the registry's challenge: a bearer token from its realm, or basic credentials. */
  private async authenticate(header: string | undefined, signal: AbortSignal | undefined): Promise<void> {
    const challenge = header === undefined ? undefined : parseChallenge(header)
    const hasCredentials = this.access.username !== undefined && this.access.password !== undefined
    if (challenge?.scheme === 'basic' && hasCredentials) {
      this.authorization = basicAuthorization(this.access.username!, this.access.password!)
      return
    }
    if (challenge?.scheme !== 'bearer' || !challenge.params.realm) {
      throw new CleanroomError('registry_auth_failed', `${this.name}: the registry wants credentials (${challenge?.scheme ?? 'no challenge'}) and none are configured for ${this.reference.registry}`, {
        suggestions: [`Add registries."${this.reference.registry}" with username and password_env (or token_env) to the runtime config`],
      })
    }
    let realm: URL
    try {
      realm = new URL(challenge.params.realm)
    } catch {
      throw new CleanroomError('registry_failed', `${this.name}: the registry's token realm ${JSON.stringify(challenge.params.realm)} is not a URL`)
    }
    if (realm.protocol !== 'https:' && realm.protocol !== 'http:') throw new CleanroomError('registry_failed', `${this.name}: token realm ${realm.href} is not http(s)`)
    realm.searchParams.set('service', challenge.params.service ?? '')
    realm.searchParams.set('scope', challenge.params.scope ?? `repository:${this.reference.repository}:pull`)
    // Credentials go to the realm only where nobody on the way can read them.
    const private_ = realm.protocol === 'https:' || isLoopbackRegistry(realm.host) || this.access.insecure === true
    const headers: Record<string, string> = hasCredentials && private_ ? {authorization: basicAuthorization(this.access.username!, this.access.password!)} : {}
    const response = await this.send(realm, headers, {withAuthorization: false, signal})
    const body = await readLimited(response, 1 << 20, 'the token response')
    if (response.statusCode !== 200) {
      throw new CleanroomError('registry_auth_failed', `${this.name}: the token service at ${realm.origin} answered ${response.statusCode}${printable(body.toString('utf8'))}`)
    }
    let token: unknown
    try {
      const parsed = JSON.parse(body.toString('utf8')) as {token?: unknown; access_token?: unknown}
      token = parsed.token ?? parsed.access_token
    } catch {
      token = undefined
    }
    if (typeof token !== 'string' || token === '') throw new CleanroomError('registry_auth_failed', `${this.name}: the token service at ${realm.origin} sent no token`)
    this.authorization = `Bearer ${token}`
  }

  /** One GET, following redirects; the Authorization header goes only to the registry's own origin. */
  private async send(url: URL, headers: Record<string, string>, options: {withAuthorization?: boolean; signal?: AbortSignal | undefined}): Promise<IncomingMessage> {
    let current = url
    for (let hop = 0; ; hop++) {
      const sameOrigin = current.origin === this.origin
      const auth: Record<string, string> = options.withAuthorization !== false && sameOrigin && this.authorization ? {authorization: this.authorization} : {}
      const response = await this.once(current, {...headers, ...auth}, sameOrigin, options.signal)
      const status = response.statusCode ?? 0
      if (status < 300 || status >= 400 || status === 304 || !response.headers.location) return response
      response.resume()
      if (hop >= MAX_REDIRECTS) throw new CleanroomError('registry_failed', `${this.name}: more than ${MAX_REDIRECTS} redirects from ${url.href}`)
      const next = new URL(response.headers.location, current)
      if (next.protocol !== 'https:' && !(next.protocol === 'http:' && current.protocol === 'http:')) {
        throw new CleanroomError('registry_failed', `${this.name}: refusing a redirect from ${current.origin} to ${next.origin}`)
      }
      current = next
    }
  }

  private once(url: URL, headers: Record<string, string>, sameOrigin: boolean, signal: AbortSignal | undefined): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const request = url.protocol === 'https:' ? httpsRequest : httpRequest
      const agent = sameOrigin ? this.agent : undefined
      const ca = url.protocol === 'https:' && !sameOrigin ? {ca: trustedCas()} : {}
      const req = request(url, {method: 'GET', headers: {'user-agent': 'cleanroom', ...headers}, ...(agent && {agent}), ...ca, ...(signal && {signal})}, resolve)
      req.setTimeout(IDLE_TIMEOUT_MS, () => req.destroy(new Error(`no answer for ${IDLE_TIMEOUT_MS / 1000}s`)))
      req.on('error', (error) => {
        if (signal?.aborted) return reject(signal.reason ?? error)
        reject(
          new CleanroomError('registry_failed', `cannot reach the registry at ${url.origin}: ${redact(messageOf(error), this.access)}`, {
            suggestions: url.protocol === 'https:' && isLoopbackRegistry(url.host) ? [] : [`Check the name ${this.reference.registry} and the network; a plain-HTTP registry needs registries."${this.reference.registry}".insecure: true`],
          }),
        )
      })
      req.end()
    })
  }
}

/** The registry's error text (OCI `errors[0].message`), made printable and short. */
async function errorDetail(response: IncomingMessage): Promise<string> {
  const body = await readLimited(response, 1 << 20, 'the error body').catch(() => Buffer.alloc(0))
  let text = body.toString('utf8')
  try {
    const parsed = JSON.parse(text) as {errors?: {code?: string; message?: string}[]}
    const first = parsed.errors?.[0]
    if (first) text = [first.code, first.message].filter(Boolean).join(' ')
  } catch {
    // not JSON: the raw text
  }
  return printable(text)
}

function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, ' ').trim().slice(0, 200)
  return clean === '' ? '' : `: ${clean}`
}

let cas: string[] | undefined

/** Node's CAs, the system bundle (where corporate TLS-inspecting CAs are installed) and NODE_EXTRA_CA_CERTS: a `ca` option replaces Node's defaults. */
function trustedCas(): string[] {
  if (cas) return cas
  const files = [SYSTEM_CA_BUNDLE, process.env.NODE_EXTRA_CA_CERTS].filter((file): file is string => Boolean(file))
  const extra = files.flatMap((file) => {
    try {
      return [readFileSync(file, 'utf8')]
    } catch {
      return []
    }
  })
  cas = [...rootCertificates, ...extra]
  return cas
}
