import {CleanroomError} from '../errors/index.js'
import {isDigest} from './reference.js'

export const MEDIA_TYPES = {
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  layerTar: 'application/vnd.oci.image.layer.v1.tar',
  layerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  layerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const

/** Every manifest and index media type a pull asks for, best first. */
export const MANIFEST_ACCEPT = [MEDIA_TYPES.ociIndex, MEDIA_TYPES.ociManifest, MEDIA_TYPES.dockerList, MEDIA_TYPES.dockerManifest].join(', ')

/** Manifests, indexes and configs are small; a registry sending more is refused (containerd's limit). */
export const MAX_DOCUMENT_BYTES = 4 << 20

export interface Descriptor {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  annotations?: Record<string, string>
}

export interface Platform {
  os: string
  architecture: string
  variant?: string
}

export interface ImageManifest {
  kind: 'manifest'
  config: Descriptor
  layers: Descriptor[]
}

export interface ImageIndex {
  kind: 'index'
  manifests: Descriptor[]
}

/** The parts of an image config a sandbox runs by (OCI image config, `config` object). */
export interface ImageRuntimeConfig {
  Env?: string[]
  WorkingDir?: string
  User?: string
  Entrypoint?: string[]
  Cmd?: string[]
}

export interface ImageConfig {
  os: string
  architecture: string
  variant?: string
  diffIds: string[]
  config: ImageRuntimeConfig
}

export type CompressionKind = 'none' | 'gzip' | 'zstd'

/** How a layer is compressed, by its media type; anything else cannot be unpacked. */
export function layerCompression(mediaType: string): CompressionKind {
  switch (mediaType) {
    case MEDIA_TYPES.layerTar:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar':
      return 'none'
    case MEDIA_TYPES.layerGzip:
    case MEDIA_TYPES.dockerLayerGzip:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip':
    case 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip':
      return 'gzip'
    case MEDIA_TYPES.layerZstd:
    case 'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd':
      return 'zstd'
    default:
      throw new CleanroomError('image_unsupported', `layer media type ${JSON.stringify(mediaType)} is not one cleanroom can unpack (tar, tar+gzip, tar+zstd)`)
  }
}

/**
 * A manifest or index from its bytes. `contentType` is what the registry said;
 * the document's own `mediaType` (or its shape) decides when that is missing.
 */
export function parseManifestDocument(bytes: Buffer, contentType: string | undefined, where: string): ImageManifest | ImageIndex {
  const document = parseJson(bytes, where)
  const declared = typeof document.mediaType === 'string' ? document.mediaType : undefined
  const type = [declared, contentType?.split(';')[0]?.trim()].find((value) => value && value !== 'application/json')
  const isIndex = type === MEDIA_TYPES.ociIndex || type === MEDIA_TYPES.dockerList || (type === undefined && Array.isArray(document.manifests))
  const isManifest = type === MEDIA_TYPES.ociManifest || type === MEDIA_TYPES.dockerManifest || (type === undefined && Array.isArray(document.layers))
  if (document.schemaVersion === 1 || type?.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    throw new CleanroomError('image_unsupported', `${where} is a Docker schema 1 manifest, which cleanroom does not pull`, {suggestions: ['Push the image again with a current Docker or buildah']})
  }
  if (isIndex) {
    if (!Array.isArray(document.manifests)) throw invalid(where, 'an index without "manifests"')
    return {kind: 'index', manifests: document.manifests.map((entry, i) => descriptor(entry, `${where} manifests[${i}]`))}
  }
  if (isManifest) {
    if (!Array.isArray(document.layers)) throw invalid(where, 'a manifest without "layers"')
    return {
      kind: 'manifest',
      config: descriptor(document.config, `${where} config`),
      layers: document.layers.map((entry, i) => descriptor(entry, `${where} layers[${i}]`)),
    }
  }
  throw new CleanroomError('image_unsupported', `${where} has media type ${JSON.stringify(type ?? 'none')}, not an OCI or Docker v2 manifest or index`)
}

/** An image config from its bytes: the platform, the layers' uncompressed digests and the run settings. */
export function parseImageConfig(bytes: Buffer, where: string): ImageConfig {
  const document = parseJson(bytes, where)
  const rootfs = document.rootfs as {diff_ids?: unknown} | undefined
  const diffIds = rootfs?.diff_ids
  if (!Array.isArray(diffIds) || !diffIds.every((id) => isDigest(id))) throw invalid(where, 'rootfs.diff_ids must be a list of sha256 digests')
  const run = (typeof document.config === 'object' && document.config !== null ? document.config : {}) as Record<string, unknown>
  const config: ImageRuntimeConfig = {}
  const strings = (value: unknown): value is string[] => Array.isArray(value) && value.every((item) => typeof item === 'string')
  if (strings(run.Env)) config.Env = run.Env
  if (typeof run.WorkingDir === 'string' && run.WorkingDir !== '') config.WorkingDir = run.WorkingDir
  if (typeof run.User === 'string' && run.User !== '') config.User = run.User
  if (strings(run.Entrypoint)) config.Entrypoint = run.Entrypoint
  if (strings(run.Cmd)) config.Cmd = run.Cmd
  return {
    os: typeof document.os === 'string' ? document.os : '',
    architecture: typeof document.architecture === 'string' ? document.architecture : '',
    ...(typeof document.variant === 'string' && {variant: document.variant}),
    diffIds: diffIds as string[],
    config,
  }
}

function descriptor(value: unknown, where: string): Descriptor {
  if (typeof value !== 'object' || value === null) throw invalid(where, 'not a descriptor')
  const {mediaType, digest, size, platform, annotations} = value as Record<string, unknown>
  if (typeof mediaType !== 'string') throw invalid(where, 'mediaType missing')
  if (!isDigest(digest)) throw invalid(where, `digest ${JSON.stringify(digest)} is not a sha256 digest`)
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw invalid(where, 'size must be a non-negative integer')
  const result: Descriptor = {mediaType, digest, size}
  if (typeof platform === 'object' && platform !== null) {
    const {os, architecture, variant} = platform as Record<string, unknown>
    if (typeof os === 'string' && typeof architecture === 'string') result.platform = {os, architecture, ...(typeof variant === 'string' && {variant})}
  }
  if (typeof annotations === 'object' && annotations !== null) {
    result.annotations = Object.fromEntries(Object.entries(annotations).filter((entry): entry is [string, string] => typeof entry[1] === 'string'))
  }
  return result
}

function parseJson(bytes: Buffer, where: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch {
    throw invalid(where, 'not JSON')
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw invalid(where, 'not a JSON object')
  return value as Record<string, unknown>
}

function invalid(where: string, why: string): CleanroomError {
  return new CleanroomError('image_invalid', `${where} is invalid: ${why}`)
}
