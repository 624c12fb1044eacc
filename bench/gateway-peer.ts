/**
 * The other end of the gateway benchmark, in its own process like an agent in
 * a sandbox and a model API would be: it serves the fake upstream (a streamed
 * completion, and a long event stream) and makes the requests, directly or
 * through the gateway in the parent, over kept-alive connections as agents do.
 */
import {Agent, createServer, request} from 'node:http'
import type {AddressInfo} from 'node:net'

import {type GatewayPeerRequest, STREAM_BYTES} from './gateway-shared.js'

const EVENT = Buffer.from(`event: content_block_delta\ndata: ${JSON.stringify({type: 'content_block_delta', index: 0, delta: {type: 'text_delta', text: 'x'.repeat(900)}})}\n\n`)
const completion = ['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop'].map((event) => `event: ${event}\ndata: {"type":"${event}"}\n\n`).join('')

const upstream = createServer((req, res) => {
  req.resume()
  res.writeHead(200, {'content-type': 'text/event-stream'})
  if (req.url !== '/v1/stream') return void res.end(completion)
  let sent = 0
  const pump = () => {
    while (sent < STREAM_BYTES) {
      sent += EVENT.length
      if (!res.write(EVENT)) return void res.once('drain', pump)
    }
    res.end()
  }
  pump()
})
upstream.keepAliveTimeout = 60_000
upstream.listen(0, '127.0.0.1', () => process.send!({port: (upstream.address() as AddressInfo).port}))

const agent = new Agent({keepAlive: true, maxSockets: 1})
const body = JSON.stringify({model: 'fake', max_tokens: 16, stream: true, messages: [{role: 'user', content: 'hi'}]})

process.on('message', (message: GatewayPeerRequest) => {
  const base = message.gateway?.url ?? `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`
  const path = message.kind === 'stream' ? '/v1/stream' : '/v1/messages'
  const headers: Record<string, string> = {'content-type': 'application/json', 'x-api-key': message.gateway?.phantom ?? 'real-key'}
  const url = new URL(`${base}${path}`)
  const req = request({host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers, agent}, (res) => {
    let bytes = 0
    let answered = false
    res.on('data', (chunk: Buffer) => {
      bytes += chunk.length
      if (message.kind === 'first-byte' && !answered) {
        answered = true
        process.send!({bytes})
      }
    })
    res.on('end', () => {
      if (message.kind === 'stream') process.send!({bytes})
    })
  })
  req.end(body)
})
process.on('disconnect', () => {
  agent.destroy()
  upstream.closeAllConnections()
  upstream.close()
})
