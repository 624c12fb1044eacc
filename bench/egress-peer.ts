/**
 * The other end of the egress benchmark, in its own process like a sandboxed
 * program and a real server would be: it serves the target and makes the
 * requests, directly or through the proxy in the parent, one per message.
 */
import {createServer} from 'node:http'
import {type AddressInfo, connect, type Socket} from 'node:net'

import {DOWNLOAD_BYTES, type PeerRequest} from './egress-shared.js'


const chunk = Buffer.alloc(1 << 20, 97)
const target = createServer((req, res) => {
  const url = new URL(req.url ?? '/', 'http://target')
  if (url.pathname !== '/big') return void res.end('ok')
  // `/big?mib=N` for another size (bench/gvisor.ts).
  const total = url.searchParams.has('mib') ? Number(url.searchParams.get('mib')) * 2 ** 20 : DOWNLOAD_BYTES
  res.writeHead(200, {'content-length': total})
  let sent = 0
  const pump = () => {
    while (sent < total) {
      sent += chunk.length
      if (!res.write(chunk)) return void res.once('drain', pump)
    }
    res.end()
  }
  pump()
})

target.listen(0, '127.0.0.1', () => process.send!({port: (target.address() as AddressInfo).port}))
const targetPort = () => (target.address() as AddressInfo).port

process.on('message', (request: PeerRequest) => {
  void (async () => {
    const socket = request.proxyPort === null ? connect(targetPort(), '127.0.0.1') : await tunnel(request.proxyPort)
    const bytes = await get(socket, request.path)
    process.send!({bytes})
  })()
})
process.on('disconnect', () => target.close())

function tunnel(proxyPort: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(proxyPort, '127.0.0.1')
    socket.once('error', reject)
    socket.write(`CONNECT 127.0.0.1:${targetPort()} HTTP/1.1\r\nHost: 127.0.0.1:${targetPort()}\r\n\r\n`)
    let head = ''
    const onData = (data: Buffer) => {
      head += data.toString('latin1')
      if (!head.includes('\r\n\r\n')) return
      socket.off('data', onData)
      if (head.startsWith('HTTP/1.1 200')) resolve(socket)
      else reject(new Error(`proxy refused: ${head.split('\r\n')[0]}`))
    }
    socket.on('data', onData)
  })
}

function get(socket: Socket, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    let bytes = 0
    socket.on('data', (data: Buffer) => {
      bytes += data.length
    })
    socket.once('error', reject)
    socket.once('close', () => resolve(bytes))
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`)
  })
}
