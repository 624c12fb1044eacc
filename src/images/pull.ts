import {CleanroomError} from '../errors/index.js'
import type {RegistryAccess} from './auth.js'
import {buildImage, type ImageEvent} from './build.js'
import {MAX_DOCUMENT_BYTES, parseImageConfig, parseManifestDocument, type Platform} from './manifest.js'
import {hostPlatform, selectPlatformManifest} from './platform.js'
import {formatReference, type ImageReference, manifestReference, pinnedNames, repositoryName} from './reference.js'
import {RegistryClient} from './registry.js'
import type {SharedBuilds} from './shared-builds.js'
import type {CachedImage, ImageStore} from './store.js'
import {DigestCheck, readLimited} from './streams.js'

export interface PullOptions {
  access?: RegistryAccess
  platform?: Platform
  onEvent?: (event: ImageEvent) => void
  /** Aborted when the caller goes away. */
  signal?: AbortSignal
}

export interface PullResult {
  /** `cached`: nothing was unpacked (the image was there already); `pulled`: it was unpacked now. */
  status: 'pulled' | 'cached'
  ref: string
  image: CachedImage
}

/**
 * Pulls `reference` into the store. A digest the store already has costs no
 * request at all; a tag costs the manifest requests that resolve it, and no
 * blob is downloaded for an image (or a layer) the store has. Concurrent pulls
 * of one image share one unpack (`builds`, keyed by the image's config digest).
 */
export async function pullImage(store: ImageStore, builds: SharedBuilds<CachedImage, ImageEvent>, reference: ImageReference, options: PullOptions = {}): Promise<PullResult> {
  const ref = formatReference(reference)
  const onEvent = options.onEvent ?? (() => undefined)
  if (reference.digest) {
    const cached = await store.find(reference.digest)
    if (cached) return {status: 'cached', ref, image: await nameCached(store, cached, [reference.digest], pinnedNames(reference, reference.digest))}
  }

  const registry = new RegistryClient(reference, options.access)
  try {
    const top = await registry.manifest(manifestReference(reference), options.signal)
    const where = `${repositoryName(reference)}@${top.digest}`
    let document = parseManifestDocument(top.bytes, top.contentType, where)
    let platformManifest = top
    const digests = [top.digest]
    if (document.kind === 'index') {
      const chosen = selectPlatformManifest(document, options.platform ?? hostPlatform(), where)
      platformManifest = await registry.manifest(chosen.digest, options.signal)
      document = parseManifestDocument(platformManifest.bytes, platformManifest.contentType, `${repositoryName(reference)}@${chosen.digest}`)
      if (document.kind !== 'manifest') throw new CleanroomError('image_unsupported', `${repositoryName(reference)}@${chosen.digest} is an index inside an index, which cleanroom does not follow`)
      digests.push(platformManifest.digest)
      await store.putBlob(top.digest, top.bytes)
    }
    const manifest = document
    const refs = pinnedNames(reference, top.digest)
    const id = manifest.config.digest
    onEvent({type: 'resolved', ref, digest: top.digest, image_id: id, layers: manifest.layers.map(({digest, size}) => ({digest, size}))})

    const existing = await store.get(id)
    if (existing) return {status: 'cached', ref, image: await nameCached(store, existing, digests, refs)}

    const image = await builds.run(
      id,
      // The unpack has its own connection: it may outlive the request that started it.
      async (signal, emit) => {
        const blobs = new RegistryClient(reference, options.access)
        try {
          const configBytes = await readLimited(
            (await blobs.blob(id, signal)).pipe(new DigestCheck(`the config of ${where}`, {digest: id, size: manifest.config.size})),
            MAX_DOCUMENT_BYTES,
            `the config of ${where}`,
          )
          const config = parseImageConfig(configBytes, `the config of ${where}`)
          const documents = {manifest, manifestDigest: platformManifest.digest, manifestBytes: platformManifest.bytes, config, configBytes}
          return await buildImage(store, documents, (layer, layerSignal) => blobs.blob(layer.digest, layerSignal), {digests, refs}, emit, signal)
        } finally {
          blobs.close()
        }
      },
      onEvent,
      options.signal,
    )
    // A pull that joined another one's unpack adds its own names.
    return {status: 'pulled', ref, image: await nameCached(store, image, digests, refs)}
  } finally {
    registry.close()
  }
}

async function nameCached(store: ImageStore, image: CachedImage, digests: string[], refs: string[]): Promise<CachedImage> {
  if (digests.every((digest) => image.digests.includes(digest)) && refs.every((ref) => image.refs.includes(ref))) return image
  await store.name(image.id, {digests, refs})
  return (await store.get(image.id)) ?? image
}
