import {ProtocolError} from './head-reader.js'
import {type BodyFraming, FIELD_VALUE_CHAR, printable, TOKEN_CHAR} from './http-head.js'

/** The longest chunk-size line (with its extensions) and the most trailer bytes a chunked body may have. */
const MAX_CHUNK_LINE_BYTES = 4096
const MAX_TRAILER_BYTES = 16 * 1024
/** 13 hex digits: sizes stay exact in a JavaScript number. */
const CHUNK_SIZE_LINE = new RegExp(`^([\\da-f]{1,13})(?:[\\t ]*;${FIELD_VALUE_CHAR}*)?$`, 'i')
const TRAILER_LINE = new RegExp(`^${TOKEN_CHAR}+:${FIELD_VALUE_CHAR}*$`)
const CRLF = Buffer.from('\r\n')
const LAST_CHUNK = Buffer.from('0\r\n\r\n')

type State = 'data' | 'data-end' | 'done' | 'size' | 'trailers'

/**
 * Cuts a request's body out of what the client sends, in the form the proxy
 * forwards it: exactly `length` bytes, or a chunked body checked chunk by chunk
 * and framed again by the proxy (chunk extensions and trailer fields are
 * dropped), so that the origin server reads the body exactly as the proxy did.
 * What the client sends after the body (a second request) is never forwarded:
 * it would go to this request's destination without being decided.
 */
export class RequestBody {
  private state: State
  private remaining: number
  /** A chunk-size or trailer line not yet ended by its CRLF. */
  private line = ''
  private trailerBytes = 0
  /** How many bytes of the CRLF after a chunk's data have been seen. */
  private dataEndSeen = 0

  constructor(private readonly framing: BodyFraming) {
    this.state = framing.kind === 'chunked' ? 'size' : framing.length === 0 ? 'done' : 'data'
    this.remaining = framing.kind === 'length' ? framing.length : 0
  }

  /** The whole body has been read: whatever the client sends from now on is not forwarded. */
  get done(): boolean {
    return this.state === 'done'
  }

  /** The bytes to forward for `chunk`. Throws ProtocolError for a chunked body that is not well formed. */
  take(chunk: Buffer): Buffer {
    const forward: Buffer[] = []
    let offset = 0
    while (offset < chunk.length && this.state !== 'done') {
      switch (this.state) {
        case 'data': {
          const piece = chunk.subarray(offset, offset + this.remaining)
          forward.push(piece)
          offset += piece.length
          this.remaining -= piece.length
          if (this.remaining === 0) this.state = this.framing.kind === 'chunked' ? 'data-end' : 'done'
          break
        }
        case 'data-end': {
          if (chunk[offset] !== CRLF[this.dataEndSeen]) throw malformedBody('a chunk\'s data is not followed by CRLF')
          offset++
          this.dataEndSeen++
          if (this.dataEndSeen === CRLF.length) {
            this.dataEndSeen = 0
            forward.push(CRLF)
            this.state = 'size'
          }
          break
        }
        case 'size':
        case 'trailers': {
          const end = chunk.indexOf(0x0a, offset)
          const upTo = end === -1 ? chunk.length : end + 1
          this.line += chunk.subarray(offset, upTo).toString('latin1')
          offset = upTo
          this.checkLineLength()
          if (end !== -1) forward.push(...this.endLine())
          break
        }
      }
    }
    return forward.length === 1 ? forward[0]! : Buffer.concat(forward)
  }

  private checkLineLength(): void {
    if (this.state === 'size' && this.line.length > MAX_CHUNK_LINE_BYTES) throw malformedBody(`a chunk-size line is longer than ${MAX_CHUNK_LINE_BYTES} bytes`)
    if (this.state === 'trailers' && this.trailerBytes + this.line.length > MAX_TRAILER_BYTES) throw malformedBody(`the trailer fields are larger than ${MAX_TRAILER_BYTES / 1024} KiB`)
  }

  /** A line ended by LF: it must end with CRLF and hold no other CR or LF. */
  private endLine(): Buffer[] {
    const line = this.line
    this.line = ''
    if (!line.endsWith('\r\n') || /[\r\n]/.test(line.slice(0, -2))) throw malformedBody(`"${printable(line)}" does not end with CRLF alone`)
    const text = line.slice(0, -2)
    if (this.state === 'trailers') return this.endTrailer(text)
    const size = CHUNK_SIZE_LINE.exec(text)?.[1]
    if (size === undefined) throw malformedBody(`"${printable(text)}" is not a chunk size`)
    this.remaining = Number.parseInt(size, 16)
    if (this.remaining === 0) {
      this.state = 'trailers'
      return []
    }
    this.state = 'data'
    return [Buffer.from(`${this.remaining.toString(16)}\r\n`, 'latin1')]
  }

  private endTrailer(text: string): Buffer[] {
    if (text === '') {
      this.state = 'done'
      return [LAST_CHUNK]
    }
    if (!TRAILER_LINE.test(text)) throw malformedBody(`"${printable(text)}" is not a trailer field`)
    this.trailerBytes += text.length + 2
    return []
  }
}

function malformedBody(message: string): ProtocolError {
  return new ProtocolError('malformed_request', `malformed chunked body: ${message}`)
}
