import type {Socket} from 'node:net'

import type {EgressAttempt} from './attempt.js'
import {errorCode} from './messages.js'
import type {RequestBody} from './request-body.js'

/** Relays a tunnel both ways (CONNECT, SOCKS5); when one side closes, the other follows. */
export function splice(attempt: EgressAttempt, upstream: Socket, rest: Buffer): void {
  if (rest.length > 0) upstream.write(rest)
  attempt.client.pipe(upstream)
  relayResponse(attempt, upstream)
}

/**
 * Relays one forwarded request: its head and its body (as `body` cuts it) up,
 * the response down. What the client sends after the body is dropped: a
 * pipelined request would reach this destination undecided, or be read by an
 * origin that is itself a proxy as a request to another host.
 */
export function forwardRequest(attempt: EgressAttempt, upstream: Socket, head: Buffer, body: RequestBody, rest: Buffer): void {
  const {client} = attempt
  upstream.write(head)
  let draining = false
  const feed = (chunk: Buffer): void => {
    let piece: Buffer
    try {
      piece = body.take(chunk)
    } catch (error) {
      // The origin already has the head: cut both sides rather than answer in the middle of its response.
      attempt.error = errorCode(error)
      client.off('data', feed)
      reset(client)
      reset(upstream)
      return
    }
    if (piece.length === 0 || upstream.write(piece) || draining) return
    draining = true
    client.pause()
    upstream.once('drain', () => {
      draining = false
      client.resume()
    })
  }
  feed(rest)
  if (client.destroyed) return
  client.on('data', feed)
  client.once('end', () => upstream.end())
  client.resume()
  relayResponse(attempt, upstream)
}

/** The destination's bytes to the client; when one side closes, the other follows (at once if it broke, after flushing if not). */
function relayResponse(attempt: EgressAttempt, upstream: Socket): void {
  const {client} = attempt
  client.setNoDelay(true)
  upstream.setNoDelay(true)
  upstream.pipe(client)
  client.once('close', () => upstream.destroy())
  upstream.once('close', (hadError) => {
    if (hadError) reset(client)
    else client.end(() => client.destroy())
  })
}

/**
 * Ends a connection with a reset where it is TCP. A sandbox's connection may
 * come over a unix socket instead (gvisor's forwarder), which Node cannot reset:
 * it is closed.
 */
function reset(socket: Socket): void {
  try {
    socket.resetAndDestroy()
  } catch {
    socket.destroy()
  }
}
