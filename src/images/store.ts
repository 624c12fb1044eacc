import {createHash, randomBytes} from 'node:crypto'
import {readFileSync} from 'node:fs'
import {chmod, lstat, mkdir, readdir, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import {homedir} from 'node:os'
import {dirname, isAbsolute, join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import type {ImageRuntimeConfig} from './manifest.js'
import {formatReference, parseDigestSelector, parseImageReference} from './reference.js'

/** `$CLEANROOM_CACHE_DIR/images`, else `$XDG_CACHE_HOME/cleanroom/images`, else `~/.cache/cleanroom/images`. */
export function imageCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CLEANROOM_CACHE_DIR && isAbsolute(env.CLEANROOM_CACHE_DIR)) return join(env.CLEANROOM_CACHE_DIR, 'images')
  const xdg = env.XDG_CACHE_HOME
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.cache')
  return join(base, 'cleanroom', 'images')
}

export interface LayerRecord {
  digest: string
  size: number
  media_type: string
  /** sha256 of the uncompressed tar, as the image config lists it. */
  diff_id: string
}

/** An unpacked image as written next to its root filesystem (`image.json`); never changed afterwards. */
export interface ImageRecord {
  /** The digest of the image config: what identifies the root filesystem. */
  id: string
  /** The digest of the platform manifest the image was made from. */
  manifest_digest: string
  platform: string
  layers: LayerRecord[]
  config: ImageRuntimeConfig
  /** Bytes of the regular files in the root filesystem. */
  size_bytes: number
  created_at: string
}

/** An image as listed: its record, every digest and reference that names it, and where its root filesystem is. */
export interface CachedImage extends ImageRecord {
  /** Manifest and index digests that resolve to this image. */
  digests: string[]
  /** `registry/repository:tag` and `registry/repository@sha256:…` names it was pulled or imported as. */
  refs: string[]
  rootfs: string
}

interface IndexEntry {
  digests: string[]
  refs: string[]
}

interface CacheIndex {
  version: 1
  images: Record<string, IndexEntry>
}

/**
 * The content-addressed image cache (docs/images.md#the-cache):
 *
 *     blobs/sha256/<hex>        manifests, configs and layers, each verified before it lands here
 *     images/<hex>/rootfs/      the unpacked root filesystem of the image whose config digest is <hex>
 *     images/<hex>/image.json   its ImageRecord
 *     index.json                which digests and references name which image
 *     tmp/<pid>-<random>/       work in progress; renamed into place last, so a killed pull leaves nothing usable
 *
 * One daemon writes it; index changes are serialised in this process and each written atomically.
 */
export class ImageStore {
  private ready: Promise<void> | undefined
  private queue: Promise<unknown> = Promise.resolve()

  constructor(readonly root: string) {}

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', hexOf(digest))
  }

  imageDir(id: string): string {
    return join(this.root, 'images', hexOf(id))
  }

  rootfsPath(id: string): string {
    return join(this.imageDir(id), 'rootfs')
  }

  /** Creates the layout on first use and removes work left by processes that died (a killed pull). */
  init(): Promise<void> {
    this.ready ??= (async () => {
      for (const dir of ['blobs/sha256', 'images', 'tmp']) await mkdir(join(this.root, dir), {recursive: true, mode: 0o700})
      for (const entry of await readdir(join(this.root, 'tmp'))) {
        const pid = Number(entry.split('-')[0])
        if (!Number.isInteger(pid) || !alive(pid)) await removeTree(join(this.root, 'tmp', entry))
      }
    })()
    return this.ready
  }

  /** A fresh directory for work in progress, removed at the next start if this process dies. */
  async tempDir(): Promise<string> {
    await this.init()
    const dir = join(this.root, 'tmp', `${process.pid}-${randomBytes(6).toString('hex')}`)
    await mkdir(dir, {mode: 0o700})
    return dir
  }

  async hasBlob(digest: string): Promise<boolean> {
    return (await stat(this.blobPath(digest)).catch(() => undefined))?.isFile() === true
  }

  /** Stores a small blob whose bytes are in memory; they must match `digest`. */
  async putBlob(digest: string, bytes: Buffer): Promise<void> {
    if (`sha256:${createHash('sha256').update(bytes).digest('hex')}` !== digest) throw new CleanroomError('image_invalid', `blob ${digest} does not match its digest`)
    if (await this.hasBlob(digest)) return
    const temp = join(await this.tempDir(), 'blob')
    await writeFile(temp, bytes, {mode: 0o600})
    await this.adoptBlob(temp, digest)
    await rm(dirname(temp), {recursive: true, force: true})
  }

  /** Moves a verified blob file into the store. */
  async adoptBlob(file: string, digest: string): Promise<void> {
    await rename(file, this.blobPath(digest))
  }

  async readBlob(digest: string): Promise<Buffer> {
    return readFile(this.blobPath(digest))
  }

  /**
   * Puts an unpacked image (`dir` holds rootfs/) in place under its id, then
   * names it by `digests` and `refs`. When the image is already there (another
   * pull of it finished first), `dir` is discarded and the names still added.
   */
  async commitImage(dir: string, record: ImageRecord, names: {digests: string[]; refs: string[]}): Promise<CachedImage> {
    await writeFile(join(dir, 'image.json'), `${JSON.stringify(record, null, 2)}\n`, {mode: 0o600})
    try {
      await rename(dir, this.imageDir(record.id))
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error
      await removeTree(dir)
    }
    await this.name(record.id, names)
    return (await this.get(record.id))!
  }

  /** Adds names to an image; a reference moves from whatever image it named before. */
  async name(id: string, names: {digests: string[]; refs: string[]}): Promise<void> {
    await this.updateIndex((index) => {
      for (const [otherId, entry] of Object.entries(index.images)) {
        if (otherId !== id) entry.refs = entry.refs.filter((ref) => !names.refs.includes(ref))
      }
      const entry = (index.images[id] ??= {digests: [], refs: []})
      entry.digests = [...new Set([...entry.digests, ...names.digests])].sort()
      entry.refs = [...new Set([...entry.refs, ...names.refs])].sort()
    })
  }

  /** Every image whose directory is complete, with its names. */
  async list(): Promise<CachedImage[]> {
    await this.init()
    const index = await this.readIndex()
    const images: CachedImage[] = []
    for (const name of (await readdir(join(this.root, 'images'))).sort()) {
      const image = await this.load(`sha256:${name}`, index)
      if (image) images.push(image)
    }
    return images
  }

  async get(id: string): Promise<CachedImage | undefined> {
    await this.init()
    return this.load(id, await this.readIndex())
  }

  /** The image a selector names: its id or one of its digests (`sha256:…` or hex), or a reference. */
  async find(selector: string): Promise<CachedImage | undefined> {
    const digest = parseDigestSelector(selector)
    const images = await this.list()
    if (digest) return images.find((image) => image.id === digest || image.digests.includes(digest))
    const reference = parseImageReference(selector)
    if (reference.digest) return images.find((image) => image.digests.includes(reference.digest!))
    const name = formatReference(reference)
    return images.find((image) => image.refs.includes(name))
  }

  /** Deletes an image: its names first, then its directory (moved aside, then removed, so nothing half-deleted is ever found). */
  async remove(id: string): Promise<void> {
    await this.updateIndex((index) => {
      delete index.images[id]
    })
    const aside = join(await this.tempDir(), 'removed')
    await rename(this.imageDir(id), aside).catch((error: NodeJS.ErrnoException) => {
      if (error.code !== 'ENOENT') throw error
    })
    await removeTree(dirname(aside))
  }

  /** Deletes blobs no remaining image refers to; returns the bytes freed. */
  async removeUnusedBlobs(): Promise<number> {
    const used = new Set<string>()
    for (const image of await this.list()) {
      for (const digest of [image.id, image.manifest_digest, ...image.digests, ...image.layers.map((layer) => layer.digest)]) used.add(hexOf(digest))
    }
    let freed = 0
    const dir = join(this.root, 'blobs', 'sha256')
    for (const name of await readdir(dir)) {
      if (used.has(name)) continue
      freed += (await stat(join(dir, name)).catch(() => undefined))?.size ?? 0
      await rm(join(dir, name), {force: true})
    }
    return freed
  }

  private async load(id: string, index: CacheIndex): Promise<CachedImage | undefined> {
    let record: ImageRecord
    try {
      record = JSON.parse(await readFile(join(this.imageDir(id), 'image.json'), 'utf8')) as ImageRecord
    } catch {
      return undefined
    }
    const entry = index.images[record.id] ?? {digests: [], refs: []}
    return {...record, digests: entry.digests, refs: entry.refs, rootfs: this.rootfsPath(record.id)}
  }

  private async readIndex(): Promise<CacheIndex> {
    try {
      const parsed = JSON.parse(await readFile(join(this.root, 'index.json'), 'utf8')) as CacheIndex
      if (parsed.version === 1 && typeof parsed.images === 'object' && parsed.images !== null) return parsed
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' && !(error instanceof SyntaxError)) throw error
    }
    return {version: 1, images: {}}
  }

  private updateIndex(change: (index: CacheIndex) => void): Promise<void> {
    const next = this.queue.then(async () => {
      await this.init()
      const index = await this.readIndex()
      change(index)
      const temp = join(this.root, `.index.json.${process.pid}`)
      await writeFile(temp, `${JSON.stringify(index, null, 2)}\n`, {mode: 0o600})
      await rename(temp, join(this.root, 'index.json'))
    })
    this.queue = next.catch(() => undefined)
    return next
  }
}

/** Removes a tree even when its directories are read-only (image directories keep their modes). */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, {recursive: true, force: true})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EACCES' && (error as NodeJS.ErrnoException).code !== 'EPERM') throw error
    await makeWritable(path)
    await rm(path, {recursive: true, force: true})
  }
}

async function makeWritable(path: string): Promise<void> {
  const stats = await lstat(path).catch(() => undefined)
  if (!stats?.isDirectory()) return
  await chmod(path, 0o700)
  for (const child of await readdir(path)) await makeWritable(join(path, child))
}

function hexOf(digest: string): string {
  const hex = digest.startsWith('sha256:') ? digest.slice('sha256:'.length) : digest
  if (!/^[a-f0-9]{64}$/.test(hex)) throw new CleanroomError('image_invalid', `${JSON.stringify(digest)} is not a sha256 digest`)
  return hex
}

/** Whether `pid` still runs; a zombie (killed, not yet reaped by its parent) does not. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return !/^[ZX]/.test(stat.slice(stat.lastIndexOf(')') + 2))
  } catch {
    return true
  }
}
