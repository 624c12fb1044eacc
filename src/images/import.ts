import {createHash} from 'node:crypto'
import {createReadStream} from 'node:fs'
import {mkdir, open} from 'node:fs/promises'
import {join, posix} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {extract} from 'tar-stream'

import {CleanroomError} from '../errors/index.js'
import {buildImage, type ImageEvent} from './build.js'
import {type Descriptor, type ImageIndex, MAX_DOCUMENT_BYTES, MEDIA_TYPES, parseImageConfig, parseManifestDocument, type Platform} from './manifest.js'
import {formatPlatform, hostPlatform, selectPlatformManifest} from './platform.js'
import {formatReference, type ImageReference, pinnedNames} from './reference.js'
import {type CachedImage, type ImageStore, removeTree} from './store.js'
import {Coalesce, decompressor, DigestCheck, FileTee, peek, readLimited, sniffCompression} from './streams.js'
import {RootfsWriter} from './unpack.js'

const LAYER_MEDIA_TYPES = {none: MEDIA_TYPES.layerTar, gzip: MEDIA_TYPES.layerGzip, zstd: MEDIA_TYPES.layerZstd} as const
const BLOB_NAME = /^blobs\/sha256\/([a-f0-9]{64})$/
const REF_NAME_ANNOTATION = 'org.opencontainers.image.ref.name'

/**
 * Makes an image of one root filesystem tarball (plain, gzip or zstd, told by
 * its first bytes), unpacked with the same rules as a pulled layer. The image
 * gets an OCI manifest and config of its own, for the host's platform and with
 * no run settings; the same tarball imported twice is the same image.
 */
export async function importRootfs(store: ImageStore, reference: ImageReference, body: Readable, platform: Platform = hostPlatform()): Promise<CachedImage> {
  const temp = await store.tempDir()
  try {
    const writer = new RootfsWriter(join(temp, 'image', 'rootfs'))
    await writer.init()
    const {head, stream} = await peek(body)
    const compression = sniffCompression(head)
    const raw = new DigestCheck('the imported tarball')
    const diff = new DigestCheck('the imported tarball (uncompressed)')
    const blobFile = join(temp, 'layer')
    const file = await open(blobFile, 'wx', 0o600)
    try {
      await Promise.all([pipeline([stream, new Coalesce(), raw, new FileTee(file), decompressor(compression), diff]), writer.applyLayer(diff as unknown as Readable, 'of the imported tarball')])
    } finally {
      await file.close()
    }
    await writer.finish()

    const layer = {mediaType: LAYER_MEDIA_TYPES[compression], digest: raw.digest, size: raw.bytes}
    const configBytes = json({architecture: platform.architecture, os: platform.os, ...(platform.variant && {variant: platform.variant}), config: {}, rootfs: {type: 'layers', diff_ids: [diff.digest]}})
    const configDigest = sha256(configBytes)
    const manifestBytes = json({schemaVersion: 2, mediaType: MEDIA_TYPES.ociManifest, config: {mediaType: MEDIA_TYPES.ociConfig, digest: configDigest, size: configBytes.length}, layers: [layer]})
    const manifestDigest = sha256(manifestBytes)
    await store.adoptBlob(blobFile, layer.digest)
    await store.putBlob(configDigest, configBytes)
    await store.putBlob(manifestDigest, manifestBytes)
    const record = {
      id: configDigest,
      manifest_digest: manifestDigest,
      platform: formatPlatform(platform),
      layers: [{digest: layer.digest, size: layer.size, media_type: layer.mediaType, diff_id: diff.digest}],
      config: {},
      size_bytes: writer.stats.bytes,
      created_at: new Date().toISOString(),
    }
    return await store.commitImage(join(temp, 'image'), record, {digests: [manifestDigest], refs: pinnedNames(reference, manifestDigest)})
  } finally {
    await removeTree(temp).catch(() => undefined)
  }
}

/**
 * Imports an image from a tar of an OCI image layout (`oci-layout`,
 * `index.json`, `blobs/sha256/…`, as `skopeo copy … oci:DIR` writes it, or an
 * oci-archive). Each blob is checked against its name as it is read; the
 * image is the one index.json tags with `reference`'s tag, else its only
 * one, else the one for this host's platform.
 */
export async function importOciLayout(store: ImageStore, reference: ImageReference, body: Readable, onEvent: (event: ImageEvent) => void = () => undefined): Promise<CachedImage> {
  const temp = await store.tempDir()
  try {
    const staging = join(temp, 'layout')
    await mkdir(staging)
    const {layoutSeen, indexBytes} = await stageLayout(body, staging)
    if (!layoutSeen || indexBytes === undefined) {
      throw new CleanroomError('image_invalid', 'the directory is not an OCI image layout: it needs an oci-layout file and an index.json', {
        suggestions: ['Give a root filesystem tarball instead, or make a layout with: skopeo copy docker://IMAGE oci:DIR'],
      })
    }
    const blob = async (digest: string, what: string) => {
      try {
        return await readLimited(createReadStream(join(staging, digest.slice('sha256:'.length))), MAX_DOCUMENT_BYTES, what)
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOENT') throw new CleanroomError('image_invalid', `the OCI layout has no blob ${digest} (${what})`)
        throw error
      }
    }
    const index = parseManifestDocument(indexBytes, MEDIA_TYPES.ociIndex, 'index.json')
    if (index.kind !== 'index') throw new CleanroomError('image_invalid', 'index.json of the OCI layout is not an image index')
    const top = chooseImage(index, reference)
    const digests = [top.digest]
    let manifestDigest = top.digest
    let manifestBytes = await blob(top.digest, 'the manifest index.json names')
    let document = parseManifestDocument(manifestBytes, top.mediaType, `manifest ${top.digest}`)
    if (document.kind === 'index') {
      manifestDigest = selectPlatformManifest(document, hostPlatform(), `manifest ${top.digest}`).digest
      manifestBytes = await blob(manifestDigest, 'the platform manifest')
      document = parseManifestDocument(manifestBytes, undefined, `manifest ${manifestDigest}`)
      if (document.kind !== 'manifest') throw new CleanroomError('image_unsupported', `manifest ${manifestDigest} is an index inside an index, which cleanroom does not follow`)
      digests.push(manifestDigest)
      await store.putBlob(top.digest, await blob(top.digest, 'the index'))
    }
    const manifest = document
    const configBytes = await blob(manifest.config.digest, 'the image config')
    const config = parseImageConfig(configBytes, `the config ${manifest.config.digest}`)
    const source = async (layer: Descriptor) => createReadStream(join(staging, layer.digest.slice('sha256:'.length)), {highWaterMark: 1 << 20})
    return await buildImage(store, {manifest, manifestDigest, manifestBytes, config, configBytes}, source, {digests, refs: pinnedNames(reference, top.digest)}, onEvent)
  } finally {
    await removeTree(temp).catch(() => undefined)
  }
}

/** Writes the layout's blobs to `staging` (each verified against its name) and keeps its two small files. */
async function stageLayout(body: Readable, staging: string): Promise<{layoutSeen: boolean; indexBytes: Buffer | undefined}> {
  const entries = extract()
  body.on('error', (error) => entries.destroy(error))
  body.pipe(entries)
  let layoutSeen = false
  let indexBytes: Buffer | undefined
  for await (const entry of entries) {
    const name = posix.normalize(entry.header.name).replace(/^(\.\/)+/, '').replace(/\/$/, '')
    const stream = entry as unknown as Readable
    if (entry.header.type !== 'file') {
      stream.resume()
      continue
    }
    const blob = BLOB_NAME.exec(name)
    if (name === 'oci-layout') {
      const layout = JSON.parse((await readLimited(stream, 4096, 'oci-layout')).toString('utf8')) as {imageLayoutVersion?: unknown}
      if (typeof layout.imageLayoutVersion !== 'string') throw new CleanroomError('image_invalid', 'oci-layout has no imageLayoutVersion')
      layoutSeen = true
    } else if (name === 'index.json') {
      indexBytes = await readLimited(stream, MAX_DOCUMENT_BYTES, 'index.json')
    } else if (blob) {
      const file = await open(join(staging, blob[1]!), 'wx', 0o600)
      try {
        await pipeline(stream, new DigestCheck(`blob ${name}`, {digest: `sha256:${blob[1]}`}), file.createWriteStream())
      } finally {
        await file.close().catch(() => undefined)
      }
    } else {
      stream.resume()
    }
  }
  return {layoutSeen, indexBytes}
}

function chooseImage(index: ImageIndex, reference: ImageReference): Descriptor {
  const tag = reference.tag
  const named = index.manifests.filter((entry) => {
    const name = entry.annotations?.[REF_NAME_ANNOTATION]
    return name !== undefined && (name === tag || name === formatReference(reference) || name.endsWith(`:${tag}`))
  })
  if (named.length === 1) return named[0]!
  if (index.manifests.length === 1) return index.manifests[0]!
  if (index.manifests.length === 0) throw new CleanroomError('image_invalid', 'index.json of the OCI layout lists no image')
  return selectPlatformManifest(index, hostPlatform(), 'index.json of the OCI layout')
}


function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value))
}

function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}
