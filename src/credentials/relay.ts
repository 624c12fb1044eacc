import type {IncomingMessage, OutgoingHttpHeaders, ServerResponse} from 'node:http'
import type {Socket} from 'node:net'

import {HTTP_FIELD_VALUE, HTTP_TOKEN} from '../egress/http-head.js'
import {errorCode, refusalStatus} from '../egress/messages.js'
import {BodyTracker, type Framing, headEnd, parseResponseHead, type ResponseHead, responseFraming, UpstreamProtocolError} from './response-framing.js'
import {type ForwardResult, HOP_BY_HOP, sendGatewayError, type UpstreamPool, UpstreamRefused, upstreamFailure, type UpstreamTarget} from './upstream.js'

/** What the sandbox has not taken yet before the upstream is read no further: reading on meanwhile keeps both legs busy. */
const MAX_UNSENT_BYTES = 1 << 20
const METHODS_WITHOUT_BODY = new Set(['GET', 'HEAD', 'DELETE', 'OPTIONS', 'TRACE'])

/** A request the gateway cannot put on the wire as it is (a swapped-in secret HTTP does not allow in a header or path). */
class UnsendableRequest extends Error {
  readonly code = 'request_unsendable'
}

/**
 * Sends `req` (its body streamed, or `body` when given) to `target` on a
 * kept-alive connection and streams the answer back as it arrives (server-sent
 * events are never held back). The answer's head is parsed and checked; its
 * body goes on as the upstream framed it, chunk lines included, while its
 * framing is followed, so a malformed or lying body ends the sandbox's
 * connection instead of desynchronising it. A refusal or a failure before the
 * answer becomes a JSON error: 403 for the policy, 502 for the network.
 */
export async function forward(pool: UpstreamPool, req: IncomingMessage, res: ServerResponse, target: UpstreamTarget, headers: OutgoingHttpHeaders, body?: Buffer): Promise<ForwardResult> {
  const result: ForwardResult = {address: null, bytesUp: 0, bytesDown: 0}
  const failBeforeAnswer = (error: unknown) => {
    if (error instanceof UpstreamRefused) result.refused = error.detail
    result.error ??= error instanceof UpstreamRefused ? error.detail.reason : errorCode(error)
    if (res.headersSent) res.destroy()
    else sendGatewayError(res, error instanceof UpstreamRefused ? refusalStatus(error.detail.reason) : 502, error instanceof UpstreamRefused ? error.detail.reason : 'upstream_failed', error instanceof UpstreamProtocolError || error instanceof UnsendableRequest ? `cleanroom credential gateway: ${target.host}:${target.port}: ${error.message}` : upstreamFailure(target, error))
    return result
  }
  const bodyMode = body !== undefined ? 'buffer' : req.headers['content-length'] !== undefined ? 'length' : req.headers['transfer-encoding'] !== undefined ? 'chunked' : 'none'
  let head: string
  try {
    head = requestHead(req.method ?? 'GET', target, headers, bodyMode === 'buffer' ? `Content-Length: ${body!.length}` : bodyMode === 'length' ? `Content-Length: ${req.headers['content-length']}` : bodyMode === 'chunked' ? 'Transfer-Encoding: chunked' : METHODS_WITHOUT_BODY.has(req.method ?? 'GET') ? undefined : 'Content-Length: 0')
  } catch (error) {
    req.resume()
    return failBeforeAnswer(error)
  }
  let socket: Socket
  try {
    socket = await pool.take(target)
  } catch (error) {
    req.resume()
    return failBeforeAnswer(error)
  }
  if (res.destroyed) {
    pool.discard(socket)
    return result
  }
  result.address = pool.addressOf(socket)
  return new Promise((resolve) => {
    let done = false
    let requestSent = false
    let pending: Buffer = Buffer.alloc(0)
    let answer: {head: ResponseHead; tracker: BodyTracker; raw: boolean} | undefined
    const finish = (reusable: boolean) => {
      if (done) return
      done = true
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', onError)
      socket.off('close', onEnd)
      if (reusable && requestSent && answer !== undefined && !answer.head.http10 && !connectionTokens(answer.head).has('close')) pool.release(target, socket)
      else pool.discard(socket)
      resolve(result)
    }
    const fail = (error: unknown) => {
      if (done) return
      result.error ??= errorCode(error)
      if (answer === undefined) failBeforeAnswer(error)
      else res.destroy()
      finish(false)
    }
    const relay = (bytes: Buffer) => {
      const {tracker, raw} = answer!
      const step = tracker.feed(bytes, !raw)
      let writable = true
      result.bytesDown += step.payloadBytes
      for (const piece of step.payload) if (piece.length > 0) writable = res.write(piece) && writable
      if (raw && step.framed > 0) writable = res.write(step.framed === bytes.length ? bytes : bytes.subarray(0, step.framed))
      if (step.ended) {
        res.end()
        finish(step.framed === bytes.length)
      } else if (!writable && res.writableLength >= MAX_UNSENT_BYTES) {
        socket.pause()
        res.once('drain', () => socket.resume())
      }
    }
    const onData = (chunk: Buffer) => {
      try {
        if (answer !== undefined) return relay(chunk)
        pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
        for (let end = headEnd(pending); end !== -1; end = headEnd(pending)) {
          const parsed = parseResponseHead(pending.subarray(0, end))
          pending = pending.subarray(end)
          if (parsed.status === 101) throw new UpstreamProtocolError('the upstream switched protocols on a request that did not ask to')
          // Interim answers (100 Continue, 103 Early Hints) are not passed on: the final one follows on the same connection.
          if (parsed.status < 200) continue
          answer = startAnswer(res, req, parsed, responseFraming(parsed, req.method ?? 'GET'))
          result.status = parsed.status
          if (answer.tracker.ended) {
            res.end()
            return finish(pending.length === 0)
          }
          if (pending.length > 0) relay(pending)
          return
        }
      } catch (error) {
        fail(error)
      }
    }
    const onEnd = () => {
      if (answer?.tracker.framing.kind === 'close') {
        res.end()
        finish(false)
      } else fail(Object.assign(new Error('the upstream closed the connection before its answer ended'), {code: 'ECONNRESET'}))
    }
    const onError = (error: Error) => fail(error)
    socket.on('data', onData)
    socket.on('end', onEnd)
    socket.on('close', onEnd)
    socket.on('error', onError)
    // The sandbox hung up: nothing more to send or wait for.
    res.on('close', () => {
      if (!res.writableFinished) fail(new Error('the sandbox closed the connection'))
    })
    socket.write(head, 'latin1')
    sendBody(req, socket, bodyMode, body, result, () => (requestSent = true))
  })
}

/** Writes the answer's head to the sandbox; its body goes on as framed when the sandbox's client reads that framing (HTTP/1.1). */
function startAnswer(res: ServerResponse, req: IncomingMessage, head: ResponseHead, framing: Framing): {head: ResponseHead; tracker: BodyTracker; raw: boolean} {
  const named = connectionTokens(head)
  const headers: string[] = []
  for (let i = 0; i < head.rawHeaders.length; i += 2) {
    const name = head.rawHeaders[i]!.toLowerCase()
    if (HOP_BY_HOP.has(name) || named.has(name) || (name === 'content-length' && !(framing.kind === 'none' && req.method === 'HEAD'))) continue
    headers.push(head.rawHeaders[i]!, head.rawHeaders[i + 1]!)
  }
  const raw = framing.kind === 'length' || (framing.kind === 'chunked' && req.httpVersion === '1.1')
  if (framing.kind === 'length') headers.push('Content-Length', String(framing.length))
  if (raw && framing.kind === 'chunked') headers.push('Transfer-Encoding', 'chunked')
  res.writeHead(head.status, headers)
  // The chunk lines come from the upstream as they are: Node must not frame the bytes a second time.
  if (raw) res.chunkedEncoding = false
  res.flushHeaders()
  return {head, tracker: new BodyTracker(framing), raw}
}

function sendBody(req: IncomingMessage, socket: Socket, mode: 'buffer' | 'chunked' | 'length' | 'none', body: Buffer | undefined, result: ForwardResult, sent: () => void): void {
  if (mode === 'buffer' || mode === 'none') {
    result.bytesUp = body?.length ?? 0
    if (body !== undefined && body.length > 0) socket.write(body)
    req.resume()
    sent()
    return
  }
  req.on('data', (chunk: Buffer) => {
    result.bytesUp += chunk.length
    let writable: boolean
    if (mode === 'chunked') {
      socket.cork()
      socket.write(`${chunk.length.toString(16)}\r\n`, 'latin1')
      socket.write(chunk)
      writable = socket.write('\r\n', 'latin1')
      socket.uncork()
    } else writable = socket.write(chunk)
    if (!writable) {
      req.pause()
      socket.once('drain', () => req.resume())
    }
  })
  req.on('end', () => {
    if (mode === 'chunked') socket.write('0\r\n\r\n', 'latin1')
    sent()
  })
}

/** The request's head; a header or path that a swapped secret made unsendable is refused, not sent. */
function requestHead(method: string, target: UpstreamTarget, headers: OutgoingHttpHeaders, framing: string | undefined): string {
  if (!HTTP_TOKEN.test(method)) throw new UnsendableRequest(`the method "${method}" is not an HTTP token`)
  if (/[^\u0021-\u00FF]/.test(target.path)) throw new UnsendableRequest('the request path holds characters HTTP does not allow (a secret swapped into it?)')
  const lines = [`${method} ${target.path} HTTP/1.1`]
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase()
    if (value === undefined || lower === 'content-length' || lower === 'transfer-encoding' || lower === 'connection') continue
    for (const each of Array.isArray(value) ? value : [String(value)]) {
      if (!HTTP_TOKEN.test(name) || !HTTP_FIELD_VALUE.test(each)) throw new UnsendableRequest(`the header ${name} holds characters HTTP does not allow (a secret swapped into it?)`)
      lines.push(`${name}: ${each}`)
    }
  }
  if (framing !== undefined) lines.push(framing)
  lines.push('Connection: keep-alive')
  return `${lines.join('\r\n')}\r\n\r\n`
}

/** The lowercase options of the answer's Connection headers: `close`, and the names of headers meant for this hop only. */
function connectionTokens(head: ResponseHead): Set<string> {
  return new Set(head.values('connection').flatMap((value) => value.toLowerCase().split(',')).map((token) => token.trim()))
}
