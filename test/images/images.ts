import {execFileSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {gzipSync} from 'node:zlib'
import {pack} from 'tar-stream'

import {pushBlob, pushManifest, sha256, type TestRegistry} from './registry.js'

export interface LayerEntry {
  name: string
  type?: 'file' | 'directory' | 'symlink' | 'link' | 'character-device' | 'fifo'
  content?: string | Buffer
  linkname?: string
  mode?: number
}

export type Compression = 'none' | 'gzip' | 'zstd'

/** A tar made entry by entry, exactly as given (hostile names included). */
export async function tarOf(entries: readonly LayerEntry[]): Promise<Buffer> {
  const archive = pack()
  const collected = (async () => {
    const chunks: Buffer[] = []
    for await (const chunk of archive) chunks.push(chunk as Buffer)
    return Buffer.concat(chunks)
  })()
  for (const entry of entries) {
    const type = entry.type ?? 'file'
    const body = type === 'file' ? Buffer.from(entry.content ?? '') : Buffer.alloc(0)
    const mode = entry.mode ?? (type === 'directory' ? 0o755 : 0o644)
    await new Promise<void>((resolve, reject) =>
      archive.entry({name: entry.name, type, mode, mtime: new Date(1_700_000_000_000), size: body.length, ...(entry.linkname !== undefined && {linkname: entry.linkname})}, body, (error) => (error ? reject(error) : resolve())),
    )
  }
  archive.finalize()
  return collected
}

export function compress(tar: Buffer, compression: Compression): Buffer {
  if (compression === 'gzip') return gzipSync(tar)
  if (compression === 'zstd') return execFileSync('zstd', ['-q', '-c', '-3'], {input: tar, maxBuffer: 1 << 30})
  return tar
}

const LAYER_TYPES: Record<Compression, string> = {
  none: 'application/vnd.oci.image.layer.v1.tar',
  gzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  zstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
}

export interface BuiltLayer {
  blob: Buffer
  digest: string
  mediaType: string
  diffId: string
}

export interface BuiltImage {
  config: Buffer
  configDigest: string
  manifest: Buffer
  manifestDigest: string
  layers: BuiltLayer[]
}

/** An OCI image (config and manifest) of the given layers, for `architecture`. */
export function ociImage(layers: readonly {tar: Buffer; compression?: Compression}[], options: {architecture?: string; variant?: string; config?: Record<string, unknown>} = {}): BuiltImage {
  const built = layers.map(({tar, compression = 'gzip'}) => {
    const blob = compress(tar, compression)
    return {blob, digest: sha256(blob), mediaType: LAYER_TYPES[compression], diffId: sha256(tar)}
  })
  const config = Buffer.from(
    JSON.stringify({
      architecture: options.architecture ?? 'amd64',
      ...(options.variant && {variant: options.variant}),
      os: 'linux',
      config: options.config ?? {Env: ['PATH=/bin'], Cmd: ['/bin/sh']},
      rootfs: {type: 'layers', diff_ids: built.map((layer) => layer.diffId)},
    }),
  )
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: {mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length},
      layers: built.map((layer) => ({mediaType: layer.mediaType, digest: layer.digest, size: layer.blob.length})),
    }),
  )
  return {config, configDigest: sha256(config), manifest, manifestDigest: sha256(manifest), layers: built}
}

/** Pushes every blob and the manifest under `tag`; answers the manifest digest. */
export async function pushImage(registry: TestRegistry, repository: string, tag: string, image: BuiltImage): Promise<string> {
  for (const layer of image.layers) await pushBlob(registry, repository, layer.blob)
  await pushBlob(registry, repository, image.config)
  return pushManifest(registry, repository, tag, image.manifest, 'application/vnd.oci.image.manifest.v1+json')
}

/** Pushes each image by digest and an index of them under `tag`. */
export async function pushIndex(registry: TestRegistry, repository: string, tag: string, entries: readonly {image: BuiltImage; platform: Record<string, string>}[]): Promise<string> {
  for (const {image} of entries) {
    for (const layer of image.layers) await pushBlob(registry, repository, layer.blob)
    await pushBlob(registry, repository, image.config)
    await pushManifest(registry, repository, image.manifestDigest, image.manifest, 'application/vnd.oci.image.manifest.v1+json')
  }
  const index = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: entries.map(({image, platform}) => ({mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.manifestDigest, size: image.manifest.length, platform})),
    }),
  )
  return pushManifest(registry, repository, tag, index, 'application/vnd.oci.image.index.v1+json')
}

/** The base of the test images: busybox-static as /bin/busybox, with sh, ls and cat linked to it. */
export async function busyboxLayer(): Promise<Buffer> {
  let busybox: Buffer
  try {
    busybox = readFileSync('/bin/busybox')
  } catch (error) {
    throw new Error(`/bin/busybox (Debian package busybox-static) is needed to build the test images: ${(error as Error).message}`)
  }
  return tarOf([
    {name: 'bin/', type: 'directory'},
    {name: 'bin/busybox', content: busybox, mode: 0o755},
    {name: 'bin/sh', type: 'symlink', linkname: 'busybox'},
    {name: 'bin/ls', type: 'symlink', linkname: '/bin/busybox'},
    {name: 'bin/cat', type: 'link', linkname: 'bin/busybox'},
    {name: 'etc/', type: 'directory'},
    {name: 'etc/os-release', content: 'NAME=cleanroom-test\n'},
    {name: 'tmp/', type: 'directory', mode: 0o1777},
  ])
}
