import type {Readable} from 'node:stream'

import {CleanroomError} from '../errors/index.js'
import type {ImageEvent} from './build.js'
import {importOciLayout, importRootfs} from './import.js'
import type {ImageRuntimeConfig} from './manifest.js'
import {pullImage, type PullOptions, type PullResult} from './pull.js'
import {type ImageReference, parseDigestSelector, parseImageReference} from './reference.js'
import {SharedBuilds} from './shared-builds.js'
import type {CachedImage, ImageStore} from './store.js'

/**
 * A sandbox as far as images care. Records name the image they run on in
 * `image_digest` (a manifest, index or config digest); a policy's pinned
 * digest counts too.
 */
export interface ImageUser {
  sandbox_id: string
  status: string
  image_digest?: string
  policy?: {image_digest?: string}
}

export interface PruneResult {
  removed: CachedImage[]
  freed_bytes: number
  dry_run: boolean
}

/** What the linux-ns backend needs to run a sandbox on an image. */
export interface ImageRuntime {
  id: string
  rootfs: string
  config: ImageRuntimeConfig
}

/** The ids of the live sandboxes (any status but stopped) that run on `image`. */
export function sandboxesUsing(image: CachedImage, sandboxes: readonly ImageUser[]): string[] {
  const names = new Set([image.id, image.manifest_digest, ...image.digests])
  return sandboxes
    .filter((sandbox) => sandbox.status !== 'stopped')
    .filter((sandbox) => [sandbox.image_digest, sandbox.policy?.image_digest].some((digest) => digest !== undefined && names.has(digest)))
    .map((sandbox) => sandbox.sandbox_id)
    .sort()
}

/** The daemon's images: the cache, with the sandboxes that use them in view. */
export class ImageService {
  private readonly builds = new SharedBuilds<CachedImage, ImageEvent>()

  constructor(
    readonly store: ImageStore,
    private readonly sandboxes: () => readonly ImageUser[],
  ) {}

  pull(reference: ImageReference, options: PullOptions): Promise<PullResult> {
    return pullImage(this.store, this.builds, reference, options)
  }

  list(): Promise<CachedImage[]> {
    return this.store.list()
  }

  /** The image a selector (reference, digest or id) names, or image_not_found. */
  async get(selector: string): Promise<CachedImage> {
    const image = await this.store.find(selector)
    if (!image) {
      throw new CleanroomError('image_not_found', `no cached image ${selector}`, {suggestions: ['List the cached images with: cleanroom image ls', `Pull it with: cleanroom image pull ${selector}`]})
    }
    return image
  }

  /** Root filesystem and run settings of a cached image: what a backend needs to start a sandbox on it. */
  async runtime(selector: string): Promise<ImageRuntime> {
    const image = await this.get(selector)
    return {id: image.id, rootfs: image.rootfs, config: image.config}
  }

  /** Deletes an image and the blobs only it used; refused while a sandbox runs on it. */
  async remove(selector: string): Promise<CachedImage> {
    const image = await this.get(selector)
    const users = sandboxesUsing(image, this.sandboxes())
    if (users.length > 0) {
      throw new CleanroomError('image_in_use', `image ${selector} is used by ${users.length === 1 ? 'sandbox' : 'sandboxes'} ${users.join(', ')}`, {
        details: {image: image.id, sandboxes: users},
        suggestions: [`Remove the sandboxes first: cleanroom sandbox rm ${users.join(' ')}`],
      })
    }
    await this.store.remove(image.id)
    await this.store.removeUnusedBlobs()
    return image
  }

  /**
   * Deletes every image no live sandbox uses and no policy pins: neither one
   * of the daemon's sandboxes' policies nor `keep` (the references or digests
   * the caller's repository policy pins). Then the blobs nothing refers to.
   */
  async prune(keep: readonly string[], dryRun: boolean): Promise<PruneResult> {
    const pinned = new Set<string>()
    for (const value of keep) {
      const digest = parseDigestSelector(value) ?? parseImageReference(value).digest
      if (digest) pinned.add(digest)
    }
    const sandboxes = this.sandboxes()
    for (const sandbox of sandboxes) if (sandbox.policy?.image_digest) pinned.add(sandbox.policy.image_digest)
    const removed: CachedImage[] = []
    for (const image of await this.store.list()) {
      if (sandboxesUsing(image, sandboxes).length > 0) continue
      if ([image.id, image.manifest_digest, ...image.digests].some((digest) => pinned.has(digest))) continue
      removed.push(image)
      if (!dryRun) await this.store.remove(image.id)
    }
    const freed = dryRun ? 0 : await this.store.removeUnusedBlobs()
    return {removed, freed_bytes: freed + (dryRun ? 0 : removed.reduce((sum, image) => sum + image.size_bytes, 0)), dry_run: dryRun}
  }

  async importRootfs(reference: ImageReference, body: Readable): Promise<CachedImage> {
    return importRootfs(this.store, requireTag(reference), body)
  }

  async importOciLayout(reference: ImageReference, body: Readable): Promise<CachedImage> {
    return importOciLayout(this.store, requireTag(reference), body)
  }
}

/** An import names an image; a digest would claim content the import has not seen yet. */
function requireTag(reference: ImageReference): ImageReference {
  if (reference.digest) {
    throw new CleanroomError('image_ref_invalid', 'an imported image is named by a tag (repository:tag), not a digest: its digest is computed from what is imported')
  }
  return reference
}
