import {connect, type Socket} from 'node:net'

/** A response head is a status line and a few headers. */
const MAX_HEAD = 64 * 1024

export type Exchange = {upgraded: false; status: number; body: Buffer} | {upgraded: true; socket: Socket}

/**
 * One HTTP/1.1 exchange on a fresh unix-socket connection: `request` (head and
 * body, already encoded) goes out at once, the answer is read up to its
 * Content-Length (or the connection's end), or, on 101, the socket is handed
 * back with whatever followed the head unread. Node's http client costs
 * several milliseconds to warm up in a process that makes one request; this
 * costs a connect. The daemon answers every JSON request with a Content-Length.
 */
export function exchange(socketPath: string, request: (Buffer | string)[], timeoutMs?: number): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath)
    // A daemon that accepts but never answers (hung) must not hang a caller that cannot wait.
    const timer = timeoutMs === undefined ? undefined : setTimeout(() => settle(Object.assign(new Error(`no answer within ${timeoutMs} ms`), {code: 'ETIMEDOUT'})), timeoutMs)
    let received: Buffer = Buffer.alloc(0)
    let head: {status: number; length: number | undefined; bodyStart: number} | undefined

    const settle = (result: Exchange | Error) => {
      clearTimeout(timer)
      socket.off('data', onData)
      socket.off('end', onEnd)
      socket.off('error', settle)
      if (result instanceof Error) {
        socket.destroy()
        reject(result)
      } else {
        if (!result.upgraded) socket.destroy()
        resolve(result)
      }
    }
    const onData = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk])
      head ??= parseHead(received)
      if (head === undefined) {
        if (received.length > MAX_HEAD) settle(new Error('oversized response head'))
        return
      }
      if (head.status === 101) {
        socket.pause()
        const rest = received.subarray(head.bodyStart)
        if (rest.length > 0) socket.unshift(rest)
        settle({upgraded: true, socket})
        return
      }
      if (head.length !== undefined && received.length - head.bodyStart >= head.length) {
        settle({upgraded: false, status: head.status, body: received.subarray(head.bodyStart, head.bodyStart + head.length)})
      }
    }
    const onEnd = () => {
      if (head === undefined || head.status === 101) settle(new Error('the connection closed before a response'))
      else settle({upgraded: false, status: head.status, body: received.subarray(head.bodyStart)})
    }
    socket.on('data', onData)
    socket.once('end', onEnd)
    socket.once('error', settle)
    for (const part of request) socket.write(part)
  })
}

/** The request head for `method path` with an optional JSON body. */
export function jsonRequest(method: string, path: string, body?: string, headers: Record<string, string> = {}): string {
  const lines = [`${method} ${path} HTTP/1.1`, 'Host: cleanroom', 'Connection: close']
  for (const [name, value] of Object.entries(headers)) lines.push(`${name}: ${value}`)
  if (body !== undefined) lines.push('Content-Type: application/json', `Content-Length: ${Buffer.byteLength(body)}`)
  return `${lines.join('\r\n')}\r\n\r\n${body ?? ''}`
}

function parseHead(received: Buffer): {status: number; length: number | undefined; bodyStart: number} | undefined {
  const end = received.indexOf('\r\n\r\n')
  if (end === -1) return undefined
  const text = received.subarray(0, end).toString('latin1')
  const status = Number(/^HTTP\/1\.[01] (\d{3}) /.exec(text)?.[1] ?? 0)
  const length = /\r\ncontent-length: *(\d+)/i.exec(text)?.[1]
  return {status, length: length === undefined ? undefined : Number(length), bodyStart: end + 4}
}
