/**
 * An upstream's HTTP/1.1 answer as the gateway relays it: its head parsed and
 * checked, and its body's framing followed byte by byte, so that the bytes can
 * go on to the sandbox unchanged while the gateway still knows where the body
 * ends (and the kept-alive connections on both sides stay in step).
 */

import {FIELD_VALUE_CHAR, TOKEN_CHAR} from '../egress/http-head.js'

/** As Node's own HTTP parser allows by default. */
export const MAX_RESPONSE_HEAD_BYTES = 16 * 1024
const MAX_RESPONSE_HEADERS = 256
const MAX_CHUNK_LINE_BYTES = 4096
const MAX_TRAILER_BYTES = 16 * 1024
const LF = 0x0a
const CR = 0x0d

const TOKEN = `${TOKEN_CHAR}+`
const FIELD_VALUE = `${FIELD_VALUE_CHAR}*`
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [\t\x20-\x7e\x80-\xff]*)?$/
const HEADER_LINE = new RegExp(`^(${TOKEN}):[\\t ]*(${FIELD_VALUE}?)[\\t ]*$`)
const QUOTED = '"(?:[\\t \\x21\\x23-\\x5b\\x5d-\\x7e\\x80-\\xff]|\\\\[\\t\\x20-\\x7e\\x80-\\xff])*"'
const CHUNK_LINE = new RegExp(`^([0-9A-Fa-f]{1,16})(?:[\\t ]*;[\\t ]*${TOKEN}(?:[\\t ]*=[\\t ]*(?:${TOKEN}|${QUOTED}))?)*$`)

/** An answer that does not keep to HTTP/1.1: nothing more of it may reach the sandbox. */
export class UpstreamProtocolError extends Error {
  readonly code = 'upstream_protocol_error'
}

export interface ResponseHead {
  status: number
  http10: boolean
  /** Names and values in the order they came, as `[name, value, name, value, …]`. */
  rawHeaders: string[]
  /** The values of one header, lowercase name. */
  values(name: string): string[]
}

/** How the body after a head ends (RFC 9112 §6.3); `close`: when the upstream closes the connection. */
export type Framing = {kind: 'none'} | {kind: 'length'; length: number} | {kind: 'chunked'} | {kind: 'close'}

/** The end of a head in `bytes` (the index just past its blank line), or -1 while it is incomplete. */
export function headEnd(bytes: Buffer): number {
  if (bytes.length > MAX_RESPONSE_HEAD_BYTES && bytes.indexOf('\r\n\r\n', 0, 'latin1') === -1) throw new UpstreamProtocolError(`the answer's head is over ${MAX_RESPONSE_HEAD_BYTES / 1024} KiB`)
  const at = bytes.indexOf('\r\n\r\n', 0, 'latin1')
  if (at === -1) return -1
  if (at + 4 > MAX_RESPONSE_HEAD_BYTES) throw new UpstreamProtocolError(`the answer's head is over ${MAX_RESPONSE_HEAD_BYTES / 1024} KiB`)
  return at + 4
}

/** Parses a response head (its bytes up to and with the blank line); every line ends in CRLF, no folded lines. */
export function parseResponseHead(bytes: Buffer): ResponseHead {
  const lines = bytes.toString('latin1', 0, bytes.length - 4).split('\r\n')
  const statusLine = STATUS_LINE.exec(lines[0]!)
  if (statusLine === null) throw new UpstreamProtocolError(`the answer does not start with an HTTP/1.x status line`)
  if (lines.length - 1 > MAX_RESPONSE_HEADERS) throw new UpstreamProtocolError(`the answer has more than ${MAX_RESPONSE_HEADERS} headers`)
  const rawHeaders: string[] = []
  for (const line of lines.slice(1)) {
    const header = HEADER_LINE.exec(line)
    if (header === null) throw new UpstreamProtocolError(`the answer has a malformed header line`)
    rawHeaders.push(header[1]!, header[2]!)
  }
  return {
    status: Number(statusLine[2]),
    http10: statusLine[1] === '0',
    rawHeaders,
    values(name) {
      const out: string[] = []
      for (let i = 0; i < rawHeaders.length; i += 2) if (rawHeaders[i]!.toLowerCase() === name) out.push(rawHeaders[i + 1]!)
      return out
    },
  }
}

/** Where the body after `head` ends; an answer with both Transfer-Encoding and Content-Length, or ambiguous ones, is refused. */
export function responseFraming(head: ResponseHead, method: string): Framing {
  if (method === 'HEAD' || head.status < 200 || head.status === 204 || head.status === 304) return {kind: 'none'}
  const codings = head.values('transfer-encoding').flatMap((value) => value.split(',')).map((coding) => coding.trim().toLowerCase())
  const lengths = head.values('content-length').flatMap((value) => value.split(',')).map((length) => length.trim())
  if (codings.length > 0 && lengths.length > 0) throw new UpstreamProtocolError('the answer has both Transfer-Encoding and Content-Length')
  if (codings.length > 0) {
    if (codings.length !== 1 || codings[0] !== 'chunked') throw new UpstreamProtocolError(`the answer's transfer coding "${codings.join(', ')}" is not chunked`)
    return head.http10 ? {kind: 'close'} : {kind: 'chunked'}
  }
  if (lengths.length > 0) {
    if (!lengths.every((length) => /^\d{1,15}$/.test(length)) || new Set(lengths.map(Number)).size !== 1) throw new UpstreamProtocolError(`the answer's Content-Length "${lengths.join(', ')}" is not one number`)
    return {kind: 'length', length: Number(lengths[0])}
  }
  return {kind: 'close'}
}

/** What one read of the upstream held: `framed` bytes of the body (framing included), how many of them were payload, and whether the body ended there. */
export interface BodyStep {
  framed: number
  payloadBytes: number
  /** The payload itself, when asked for. */
  payload: Buffer[]
  ended: boolean
}

/** Follows a body's framing across reads: each read's bytes up to the body's end are checked before any goes on. */
export class BodyTracker {
  private remaining: number
  private state: 'size' | 'data' | 'data-end' | 'trailer' | 'done'
  private line = ''
  private sawCr = false
  private trailerBytes = 0

  constructor(readonly framing: Framing) {
    this.remaining = framing.kind === 'length' ? framing.length : 0
    this.state = framing.kind === 'chunked' ? 'size' : framing.kind === 'close' || (framing.kind === 'length' && framing.length > 0) ? 'data' : 'done'
  }

  get ended(): boolean {
    return this.state === 'done'
  }

  /** The framing of `bytes`, checked; `collect`: with the payload's pieces (to frame them again). */
  feed(bytes: Buffer, collect: boolean): BodyStep {
    if (this.framing.kind === 'close') return {framed: bytes.length, payloadBytes: bytes.length, payload: [bytes], ended: false}
    const payload: Buffer[] = []
    let payloadBytes = 0
    let at = 0
    while (at < bytes.length && this.state !== 'done') {
      if (this.state === 'data') {
        const take = Math.min(this.remaining, bytes.length - at)
        if (collect) payload.push(bytes.subarray(at, at + take))
        payloadBytes += take
        at += take
        this.remaining -= take
        if (this.remaining === 0) this.state = this.framing.kind === 'length' ? 'done' : 'data-end'
        continue
      }
      if (this.state === 'data-end') {
        if (bytes[at] !== (this.sawCr ? LF : CR)) throw new UpstreamProtocolError('a chunk of the answer does not end in CRLF')
        at += 1
        this.sawCr = !this.sawCr
        if (!this.sawCr) this.state = 'size'
        continue
      }
      const afterSizeLine = this.state === 'size' && this.line === '' ? this.sizeLine(bytes, at) : -1
      if (afterSizeLine !== -1) {
        at = afterSizeLine
      } else {
        const end = bytes.indexOf(LF, at)
        const piece = bytes.toString('latin1', at, end === -1 ? bytes.length : end)
        this.line += piece
        if (this.state === 'trailer') this.trailerBytes += piece.length + 1
        if (this.line.length > MAX_CHUNK_LINE_BYTES || this.trailerBytes > MAX_TRAILER_BYTES) throw new UpstreamProtocolError('a chunk size line or the trailers of the answer are too long')
        if (end === -1) return {framed: bytes.length, payloadBytes, payload, ended: false}
        at = end + 1
        const line = this.line
        this.line = ''
        this.endLine(line)
      }
    }
    return {framed: at, payloadBytes, payload, ended: this.state === 'done'}
  }

  /** The common size line, hex digits and CRLF whole in `bytes`, read without copying: the index after it, or -1 for any other (read by endLine). */
  private sizeLine(bytes: Buffer, from: number): number {
    let size = 0
    let at = from
    for (let digit = hexDigit(bytes[at]); digit !== -1 && at - from < 13; digit = hexDigit(bytes[at])) {
      size = size * 16 + digit
      at += 1
    }
    if (at === from || bytes[at] !== CR || bytes[at + 1] !== LF) return -1
    this.remaining = size
    this.state = size === 0 ? 'trailer' : 'data'
    return at + 2
  }

  private endLine(line: string): void {
    if (!line.endsWith('\r') || line.indexOf('\r') !== line.length - 1) throw new UpstreamProtocolError('a line of the chunked answer does not end in CRLF')
    const text = line.slice(0, -1)
    if (this.state === 'trailer') {
      if (text === '') this.state = 'done'
      else if (!HEADER_LINE.test(text)) throw new UpstreamProtocolError('the answer has a malformed trailer line')
      return
    }
    const size = CHUNK_LINE.exec(text)
    if (size === null) throw new UpstreamProtocolError('the answer has a malformed chunk size line')
    this.remaining = Number.parseInt(size[1]!, 16)
    if (this.remaining > Number.MAX_SAFE_INTEGER) throw new UpstreamProtocolError('a chunk of the answer is too large')
    this.state = this.remaining === 0 ? 'trailer' : 'data'
  }
}

function hexDigit(byte: number | undefined): number {
  if (byte === undefined) return -1
  if (byte >= 0x30 && byte <= 0x39) return byte - 0x30
  const lower = byte | 0x20
  return lower >= 0x61 && lower <= 0x66 ? lower - 0x57 : -1
}
