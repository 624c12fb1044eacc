import {createReadStream} from 'node:fs'
import {open} from 'node:fs/promises'
import {join} from 'node:path'
import type {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {CleanroomError} from '../errors/index.js'
import {type Descriptor, type ImageConfig, type ImageManifest, layerCompression} from './manifest.js'
import {formatPlatform} from './platform.js'
import {type CachedImage, type ImageStore, type LayerRecord, removeTree} from './store.js'
import {Coalesce, decompressor, DigestCheck, FileTee} from './streams.js'
import {RootfsWriter} from './unpack.js'

export type LayerStatus = 'downloading' | 'extracting' | 'done'

/** What a pull or import reports while it works (the NDJSON lines of POST /v1/images/pull). */
export type ImageEvent =
  | {type: 'resolved'; ref: string; digest: string; image_id: string; layers: {digest: string; size: number}[]}
  | {type: 'layer'; digest: string; status: LayerStatus; current: number; total: number}

/** Where an image's layer blobs come from when the store does not have them: a registry, an OCI layout. */
export type LayerSource = (layer: Descriptor, signal?: AbortSignal) => Promise<Readable>

export interface ImageDocuments {
  manifest: ImageManifest
  manifestDigest: string
  manifestBytes: Buffer
  config: ImageConfig
  configBytes: Buffer
}

const PROGRESS_INTERVAL_MS = 100

/**
 * Unpacks an image into the store: each layer, in order, is read from the
 * store when it has the blob (verified again while read) or from `source`
 * (verified while it streams, and stored as it goes), decompressed, checked
 * against the config's diff_id and applied to a root filesystem in a temp
 * directory. Only when every digest matched is the image renamed into place.
 */
export async function buildImage(
  store: ImageStore,
  documents: ImageDocuments,
  source: LayerSource,
  names: {digests: string[]; refs: string[]},
  onEvent: (event: ImageEvent) => void,
  signal?: AbortSignal,
): Promise<CachedImage> {
  const {manifest, config} = documents
  if (config.diffIds.length !== manifest.layers.length) {
    throw new CleanroomError('image_invalid', `image ${documents.manifestDigest} has ${manifest.layers.length} layers but its config lists ${config.diffIds.length}`)
  }
  for (const layer of manifest.layers) layerCompression(layer.mediaType)
  const temp = await store.tempDir()
  try {
    const writer = new RootfsWriter(join(temp, 'image', 'rootfs'))
    await writer.init()
    const layers: LayerRecord[] = []
    for (const [i, layer] of manifest.layers.entries()) {
      signal?.throwIfAborted()
      await applyLayer(store, writer, layer, config.diffIds[i]!, temp, source, onEvent, signal)
      layers.push({digest: layer.digest, size: layer.size, media_type: layer.mediaType, diff_id: config.diffIds[i]!})
    }
    await writer.finish()
    await store.putBlob(manifest.config.digest, documents.configBytes)
    await store.putBlob(documents.manifestDigest, documents.manifestBytes)
    const record = {
      id: manifest.config.digest,
      manifest_digest: documents.manifestDigest,
      platform: formatPlatform({os: config.os, architecture: config.architecture, ...(config.variant && {variant: config.variant})}),
      layers,
      config: config.config,
      size_bytes: writer.stats.bytes,
      created_at: new Date().toISOString(),
    }
    return await store.commitImage(join(temp, 'image'), record, names)
  } finally {
    await removeTree(temp).catch(() => undefined)
  }
}

async function applyLayer(
  store: ImageStore,
  writer: RootfsWriter,
  layer: Descriptor,
  diffId: string,
  temp: string,
  source: LayerSource,
  onEvent: (event: ImageEvent) => void,
  signal: AbortSignal | undefined,
): Promise<void> {
  const cached = await store.hasBlob(layer.digest)
  const report = throttled((current) => onEvent({type: 'layer', digest: layer.digest, status: cached ? 'extracting' : 'downloading', current, total: layer.size}))
  report(0, true)
  const input = cached ? createReadStream(store.blobPath(layer.digest), {highWaterMark: 1 << 20}) : await source(layer, signal)
  const blobFile = cached ? undefined : join(temp, `blob-${layer.digest.slice('sha256:'.length)}`)
  const file = blobFile === undefined ? undefined : await open(blobFile, 'wx', 0o600)
  try {
    const check = new DigestCheck(`layer ${layer.digest}`, {digest: layer.digest, size: layer.size}, report)
    const diff = new DigestCheck(`layer ${layer.digest} (uncompressed)`, {digest: diffId})
    const stages: NodeJS.ReadWriteStream[] = [check, ...(file ? [new FileTee(file)] : []), decompressor(layerCompression(layer.mediaType)), diff]
    await Promise.all([pipeline([input, new Coalesce(), ...stages], {...(signal && {signal})}), writer.applyLayer(diff as unknown as Readable, layer.digest)])
  } catch (error) {
    input.destroy()
    throw error
  } finally {
    await file?.close()
  }
  if (blobFile) await store.adoptBlob(blobFile, layer.digest)
  onEvent({type: 'layer', digest: layer.digest, status: 'done', current: layer.size, total: layer.size})
}

/** Calls `report` at most every 100 ms, and always when `force`. */
function throttled(report: (current: number) => void): (current: number, force?: boolean) => void {
  let last = 0
  return (current, force = false) => {
    const now = Date.now()
    if (!force && now - last < PROGRESS_INTERVAL_MS) return
    last = now
    report(current)
  }
}
