import {CleanroomError} from '../errors/index.js'

/** An image reference split the way Docker reads one: `[registry/]repository[:tag][@digest]`. */
export interface ImageReference {
  /** `docker.io`, `ghcr.io`, `127.0.0.1:5000`, … */
  registry: string
  /** `library/busybox`, `acme/tools/base`, … */
  repository: string
  tag?: string
  /** `sha256:<64 hex>` */
  digest?: string
}

export const DOCKER_HUB = 'docker.io'
const DEFAULT_TAG = 'latest'
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^\w[\w.-]{0,127}$/
const DIGEST = /^sha256:[a-f0-9]{64}$/
const HOST = /^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*|\[[0-9a-fA-F:.]+\])(?::\d{1,5})?$/

/**
 * Parses a reference as Docker does: the first part is a registry when it has a
 * dot, a colon or is `localhost`; otherwise the image is on Docker Hub, where a
 * one-part name lives under `library/`. No tag and no digest means `latest`.
 */
export function parseImageReference(raw: string): ImageReference {
  const text = raw.trim()
  if (text === '' || /\s|\0/.test(text)) throw invalidReference(raw, 'it is empty or contains whitespace')
  let rest = text
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw invalidReference(raw, 'the digest must be sha256: and 64 lowercase hex characters')
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) throw invalidReference(raw, `"${tag}" is not a valid tag`)
  }
  const parts = rest.split('/')
  let registry = DOCKER_HUB
  const first = parts[0] ?? ''
  if (parts.length > 1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase())) {
    registry = first
    parts.shift()
    if (!HOST.test(registry)) throw invalidReference(raw, `"${registry}" is not a registry host`)
  }
  if (registry === 'index.docker.io') registry = DOCKER_HUB
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library')
  if (parts.length === 0 || !parts.every((part) => COMPONENT.test(part))) {
    throw invalidReference(raw, 'the repository must be lowercase letters, digits and separators (. _ __ -) between slashes')
  }
  const reference: ImageReference = {registry, repository: parts.join('/')}
  if (tag !== undefined) reference.tag = tag
  if (digest !== undefined) reference.digest = digest
  else if (tag === undefined) reference.tag = DEFAULT_TAG
  return reference
}

/** `registry/repository`, the name the image is stored under. */
export function repositoryName(reference: ImageReference): string {
  return `${reference.registry}/${reference.repository}`
}

/** The reference written out in full: `registry/repository[:tag][@digest]`. */
export function formatReference(reference: ImageReference): string {
  return `${repositoryName(reference)}${reference.tag === undefined ? '' : `:${reference.tag}`}${reference.digest === undefined ? '' : `@${reference.digest}`}`
}

/** The names an image pulled or imported as `reference` gets: the reference itself, and its repository pinned to `digest`. */
export function pinnedNames(reference: ImageReference, digest: string): string[] {
  return [...new Set([formatReference(reference), `${repositoryName(reference)}@${digest}`])]
}

/** What to ask the registry for: the digest when there is one (it wins over the tag), else the tag. */
export function manifestReference(reference: ImageReference): string {
  return reference.digest ?? reference.tag ?? DEFAULT_TAG
}

/** The host and port to connect to; Docker Hub's API lives on another host than its name. */
export function registryEndpoint(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry
}

/** A registry on this machine: plain HTTP is allowed for it, as Docker allows. */
export function isLoopbackRegistry(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '::1' || /^127(?:\.\d{1,3}){3}$/.test(host)
}

/** `sha256:<64 hex>` or bare hex: the digest as a selector. */
export function parseDigestSelector(text: string): string | undefined {
  const value = text.trim()
  if (DIGEST.test(value)) return value
  if (/^[a-f0-9]{64}$/.test(value)) return `sha256:${value}`
  return undefined
}

export function isDigest(value: unknown): value is string {
  return typeof value === 'string' && DIGEST.test(value)
}

function invalidReference(raw: string, why: string): CleanroomError {
  return new CleanroomError('image_ref_invalid', `image reference ${JSON.stringify(raw)} is invalid: ${why}`, {
    suggestions: ['Write it as registry/repository:tag or registry/repository@sha256:<digest>, e.g. ghcr.io/acme/base:1.2'],
  })
}
