import {createHash, type Hash} from 'node:crypto'
import type {FileHandle} from 'node:fs/promises'
import {Readable, Transform, type TransformCallback} from 'node:stream'
import {createGunzip} from 'node:zlib'

import {CleanroomError} from '../errors/index.js'
import type {CompressionKind} from './manifest.js'
import {zstdDecompressor} from './zstd.js'

/**
 * Passes bytes through while hashing and counting them. With an expected
 * digest and size, more bytes than announced fail at once and a wrong digest
 * fails at the end, before the stream ends: whatever consumed the bytes must
 * then be thrown away.
 */
export class DigestCheck extends Transform {
  private readonly hash: Hash = createHash('sha256')
  bytes = 0

  constructor(
    private readonly what: string,
    private readonly expected: {digest?: string; size?: number} = {},
    private readonly onProgress?: (bytes: number) => void,
  ) {
    super()
  }

  get digest(): string {
    return `sha256:${this.hash.copy().digest('hex')}`
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length
    if (this.expected.size !== undefined && this.bytes > this.expected.size) {
      callback(mismatch(`${this.what} is larger than the ${this.expected.size} bytes its descriptor announces`))
      return
    }
    this.hash.update(chunk)
    this.onProgress?.(this.bytes)
    callback(null, chunk)
  }

  override _flush(callback: TransformCallback): void {
    if (this.expected.size !== undefined && this.bytes !== this.expected.size) {
      callback(mismatch(`${this.what} has ${this.bytes} bytes, its descriptor announces ${this.expected.size}`))
      return
    }
    const actual = this.digest
    if (this.expected.digest !== undefined && actual !== this.expected.digest) {
      callback(mismatch(`${this.what} does not match its digest: expected ${this.expected.digest}, got ${actual}`))
      return
    }
    callback()
  }
}

/** Passes bytes through and writes each chunk to `file` first (a blob being stored while it is unpacked). */
export class FileTee extends Transform {
  constructor(private readonly file: FileHandle) {
    super()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.file.write(chunk).then(
      () => callback(null, chunk),
      (error: unknown) => callback(error as Error),
    )
  }
}

/**
 * Gathers small chunks (a socket gives 16-64 KiB) into ones of about `size`
 * bytes: zlib runs each write on the thread pool, and 1 MiB writes unpack a
 * gzip layer several times faster than socket-sized ones (docs/images.md).
 */
export class Coalesce extends Transform {
  private parts: Buffer[] = []
  private length = 0

  constructor(private readonly size = 1 << 20) {
    super()
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.parts.push(chunk)
    this.length += chunk.length
    if (this.length < this.size) return callback()
    callback(null, this.joinParts())
  }

  override _flush(callback: TransformCallback): void {
    callback(null, this.length > 0 ? this.joinParts() : undefined)
  }

  private joinParts(): Buffer {
    const joined = this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length)
    this.parts = []
    this.length = 0
    return joined
  }
}

/** The decompressor for a layer; `none` passes bytes through. */
export function decompressor(kind: CompressionKind): NodeJS.ReadWriteStream {
  if (kind === 'gzip') return createGunzip({chunkSize: 1 << 20})
  if (kind === 'zstd') return zstdDecompressor()
  return new Transform({transform: (chunk, _encoding, callback) => callback(null, chunk)})
}

/** What compression the first bytes of a stream show (tarballs given to `image import`). */
export function sniffCompression(head: Buffer): CompressionKind {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip'
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd'
  return 'none'
}

/** The stream's first chunk (for sniffing), and the whole stream again, first chunk included. */
export async function peek(source: Readable): Promise<{head: Buffer; stream: Readable}> {
  const iterator = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>
  const first = await iterator.next()
  const head = first.done ? Buffer.alloc(0) : first.value
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length > 0) yield head
    for (let next = await iterator.next(); !next.done; next = await iterator.next()) yield next.value
  }
  return {head, stream: Readable.from(replay(), {objectMode: false})}
}

/** A small document (manifest, config, index) read whole, refused past `limit` bytes. */
export async function readLimited(source: AsyncIterable<Buffer>, limit: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of source) {
    size += chunk.length
    if (size > limit) throw new CleanroomError('image_invalid', `${what} is larger than ${limit} bytes`)
    chunks.push(chunk)
  }
  return Buffer.concat(chunks)
}

function mismatch(message: string): CleanroomError {
  return new CleanroomError('image_invalid', message, {suggestions: ['The registry or the file served corrupted or altered content; nothing of it was kept']})
}
