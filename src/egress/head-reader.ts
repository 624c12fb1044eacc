import type {Socket} from 'node:net'

import type {EgressReason} from './decide.js'

/** A request the proxy will not serve; `socksReply` is the SOCKS5 reply code to send, when one applies. */
export class ProtocolError extends Error {
  constructor(
    readonly reason: EgressReason,
    message: string,
    readonly socksReply?: number,
  ) {
    super(message)
    this.name = 'ProtocolError'
  }
}

/** The client closed (or broke) its connection before its request head was complete. */
export class ClientGone extends Error {
  constructor() {
    super('the client closed the connection before its request was complete')
    this.name = 'ClientGone'
  }
}

/**
 * Reads a client's request head (an HTTP head, or the SOCKS5 greeting and
 * request) with a size cap and one deadline for the whole head, then hands
 * the socket back, paused, with whatever arrived after the head.
 */
export class HeadReader {
  private buffer: Buffer = Buffer.alloc(0)
  private consumed = 0
  private failure: Error | undefined
  private wake: (() => void) | undefined
  private readonly timer: NodeJS.Timeout

  constructor(
    private readonly socket: Socket,
    private readonly limit: number,
    timeoutMs: number,
  ) {
    socket.on('data', this.onData)
    socket.on('end', this.onGone)
    socket.on('close', this.onGone)
    this.timer = setTimeout(() => this.fail(new ProtocolError('head_timeout', `the request head was not complete within ${timeoutMs / 1000} s`)), timeoutMs)
    this.timer.unref()
  }

  /** Whether the client sent any byte at all. */
  get started(): boolean {
    return this.consumed + this.buffer.length > 0
  }

  /** The next byte, left unread. */
  async peek(): Promise<number> {
    await this.take((buffered) => (buffered.length > 0 ? 0 : undefined))
    return this.buffer[0] ?? 0
  }

  /** Exactly `count` bytes. */
  async bytes(count: number): Promise<Buffer> {
    return this.take((buffered) => (buffered.length >= count ? count : undefined))
  }

  /** Everything up to and including `delimiter`. */
  async through(delimiter: string): Promise<Buffer> {
    return this.take((buffered) => {
      const at = buffered.indexOf(delimiter, 0, 'latin1')
      return at === -1 ? undefined : at + delimiter.length
    })
  }

  /** Stops reading and returns what arrived after the head; the socket stays paused until someone reads it. */
  detach(): Buffer {
    this.socket.pause()
    this.socket.off('data', this.onData)
    this.socket.off('end', this.onGone)
    this.socket.off('close', this.onGone)
    clearTimeout(this.timer)
    const rest = this.buffer
    this.buffer = Buffer.alloc(0)
    return rest
  }

  /**
   * Waits until `measure` says how many buffered bytes form the next piece
   * (0 for a peek), consumes and returns them. A piece that would end past
   * `limit` fails as head_too_large.
   */
  private async take(measure: (buffered: Buffer) => number | undefined): Promise<Buffer> {
    for (;;) {
      const length = measure(this.buffer)
      if (length !== undefined && this.consumed + length > this.limit) this.fail(this.tooLarge())
      else if (length !== undefined) return this.consume(length)
      if (this.failure) throw this.failure
      if (this.consumed + this.buffer.length >= this.limit) this.fail(this.tooLarge())
      else await new Promise<void>((resolve) => (this.wake = resolve))
    }
  }

  private consume(length: number): Buffer {
    const piece = this.buffer.subarray(0, length)
    this.buffer = this.buffer.subarray(length)
    this.consumed += length
    return piece
  }

  private readonly onData = (chunk: Buffer): void => {
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk])
    // Past the cap nothing more is needed to answer; stop reading so a flood is not buffered.
    if (this.consumed + this.buffer.length > this.limit) this.socket.pause()
    this.wakeUp()
  }

  private readonly onGone = (): void => {
    this.fail(new ClientGone())
  }

  private fail(error: Error): void {
    this.failure ??= error
    clearTimeout(this.timer)
    this.wakeUp()
  }

  private tooLarge(): ProtocolError {
    return new ProtocolError('head_too_large', `the request head is larger than ${this.limit / 1024} KiB`)
  }

  private wakeUp(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}
