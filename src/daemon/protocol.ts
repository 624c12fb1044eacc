import {type Duplex, Transform, type TransformCallback} from 'node:stream'

/** The header in which the CLI says its version (lower case, as Node presents headers). */
export const CLIENT_VERSION_HEADER = 'cleanroom-version'

/** The Upgrade token of the exec stream. */
export const EXEC_UPGRADE = 'cleanroom-exec'

/**
 * The exec stream: after the attach request is upgraded, both sides send
 * frames of one type byte, a 32-bit big-endian length and the payload.
 */
export const FrameType = {
  /** client → daemon: bytes for the process's stdin */
  stdin: 0,
  /** daemon → client */
  stdout: 1,
  stderr: 2,
  /** daemon → client, last frame: JSON {exit_code, signal} */
  exit: 3,
  /** client → daemon: stdin is closed */
  stdinEof: 4,
  /** client → daemon: JSON {cols, rows} */
  resize: 5,
  /** client → daemon: JSON {signal}, e.g. "SIGINT" */
  signal: 6,
  /** daemon → client, last frame: JSON {code, message} */
  error: 7,
  /** client → daemon, first frame of GET /v1/sandboxes/{id}/exec: the JSON exec request */
  start: 8,
} as const

export type FrameTypeName = keyof typeof FrameType
export type FrameTypeCode = (typeof FrameType)[FrameTypeName]

export interface Frame {
  type: number
  payload: Buffer
}

const HEADER = 5
/** Larger frames are split by the sender; a peer announcing more is broken or hostile. */
export const MAX_FRAME = 1 << 20

export function encodeFrame(type: number, payload: Buffer | string = Buffer.alloc(0)): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload
  const header = Buffer.alloc(HEADER)
  header.writeUInt8(type, 0)
  header.writeUInt32BE(body.length, 1)
  return Buffer.concat([header, body])
}

export function encodeJsonFrame(type: number, value: unknown): Buffer {
  return encodeFrame(type, JSON.stringify(value))
}

/** Splits a byte stream into frames (object mode output). */
export class FrameDecoder extends Transform {
  private pending: Buffer = Buffer.alloc(0)

  constructor() {
    super({readableObjectMode: true})
  }

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk])
    try {
      for (let next = takeFrame(this.pending); next; next = takeFrame(this.pending)) {
        this.pending = next.rest
        this.push(next.frame)
      }
    } catch (error) {
      callback(error as Error)
      return
    }
    callback()
  }
}

/** The first whole frame in `bytes` and the bytes after it; undefined until it is all there; throws on an oversized one. */
function takeFrame(bytes: Buffer): {frame: Frame; rest: Buffer} | undefined {
  if (bytes.length < HEADER) return undefined
  const length = bytes.readUInt32BE(1)
  if (length > MAX_FRAME) throw new Error(`frame of ${length} bytes exceeds the ${MAX_FRAME}-byte limit`)
  if (bytes.length < HEADER + length) return undefined
  return {frame: {type: bytes.readUInt8(0), payload: bytes.subarray(HEADER, HEADER + length)}, rest: bytes.subarray(HEADER + length)}
}

/** Chunks of any size as frames of at most MAX_FRAME bytes. */
export function* framesOf(type: number, data: Buffer): Generator<Buffer> {
  for (let offset = 0; offset < data.length; offset += MAX_FRAME) {
    yield encodeFrame(type, data.subarray(offset, offset + MAX_FRAME))
  }
}

const FIRST_FRAME_TIMEOUT_MS = 10_000

/**
 * The first frame a peer sends on `socket` (some of it may already be in `head`),
 * and the bytes after it, which belong to the stream that follows.
 */
export function readFirstFrame(socket: Duplex, head: Buffer): Promise<{frame: Frame; rest: Buffer}> {
  return new Promise((resolve, reject) => {
    let pending = head
    const done = (error?: Error) => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.pause()
      if (error) reject(error)
    }
    const onData = (chunk: Buffer) => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      check()
    }
    const onEnd = () => done(new Error('the connection ended before the first frame'))
    const check = () => {
      let first
      try {
        first = takeFrame(pending)
      } catch (error) {
        done(error as Error)
        return
      }
      if (!first) return
      done()
      resolve(first)
    }
    const timer = setTimeout(() => done(new Error(`no first frame within ${FIRST_FRAME_TIMEOUT_MS / 1000} s`)), FIRST_FRAME_TIMEOUT_MS)
    socket.on('data', onData)
    socket.once('end', onEnd)
    check()
  })
}
