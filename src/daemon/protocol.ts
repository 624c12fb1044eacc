import {Transform, type TransformCallback} from 'node:stream'

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
    while (this.pending.length >= HEADER) {
      const length = this.pending.readUInt32BE(1)
      if (length > MAX_FRAME) {
        callback(new Error(`frame of ${length} bytes exceeds the ${MAX_FRAME}-byte limit`))
        return
      }
      if (this.pending.length < HEADER + length) break
      const frame: Frame = {type: this.pending.readUInt8(0), payload: this.pending.subarray(HEADER, HEADER + length)}
      this.pending = this.pending.subarray(HEADER + length)
      this.push(frame)
    }
    callback()
  }
}

/** Chunks of any size as frames of at most MAX_FRAME bytes. */
export function* framesOf(type: number, data: Buffer): Generator<Buffer> {
  for (let offset = 0; offset < data.length; offset += MAX_FRAME) {
    yield encodeFrame(type, data.subarray(offset, offset + MAX_FRAME))
  }
}
