import {CleanroomError} from '../errors/index.js'
import type {Descriptor, ImageIndex, Platform} from './manifest.js'

/** The platform sandboxes on this host run: linux/amd64 or linux/arm64 (v8). */
export function hostPlatform(arch: string = process.arch): Platform {
  if (arch === 'x64') return {os: 'linux', architecture: 'amd64'}
  if (arch === 'arm64') return {os: 'linux', architecture: 'arm64', variant: 'v8'}
  throw new CleanroomError('image_unsupported', `cleanroom runs images on linux/amd64 and linux/arm64 hosts, not on ${arch}`)
}

export function formatPlatform(platform: Platform): string {
  return [platform.os, platform.architecture, platform.variant].filter(Boolean).join('/')
}

/**
 * The variants an entry may declare and still run on `wanted`, best first:
 * arm64 is v8 whether or not the index says so (as containerd reads it);
 * amd64 entries without a variant (or the baseline v1) — never v2/v3, which
 * need CPU features this host may lack.
 */
function acceptedVariants(wanted: Platform): (string | undefined)[] {
  if (wanted.architecture === 'arm64') return ['v8', undefined]
  if (wanted.architecture === 'amd64') return [undefined, 'v1']
  return [wanted.variant]
}

/** The index entry for `wanted`, or platform_unavailable naming what the index has. */
export function selectPlatformManifest(index: ImageIndex, wanted: Platform, where: string): Descriptor {
  const variants = acceptedVariants(wanted)
  let best: {entry: Descriptor; rank: number} | undefined
  for (const entry of index.manifests) {
    const platform = entry.platform
    if (!platform || platform.os !== wanted.os || platform.architecture !== wanted.architecture) continue
    const rank = variants.indexOf(platform.variant)
    if (rank >= 0 && (best === undefined || rank < best.rank)) best = {entry, rank}
  }
  if (best) return best.entry
  const offered = index.manifests.flatMap((entry) => (entry.platform && entry.platform.os !== 'unknown' ? [formatPlatform(entry.platform)] : []))
  throw new CleanroomError('image_unsupported', `${where} has no image for ${formatPlatform(wanted)} (it has: ${offered.join(', ') || 'none'})`, {
    suggestions: ['Use an image built for this platform'],
  })
}
