// The "other host": runs in a network namespace the conformance suite creates (`ip netns exec`).
// Listens on TCP and UDP ports of `address` and reports every connection, request and datagram
// as a JSON line on stdout, so the suite can assert that nothing reached it.
// Usage: node netns-target.mjs '{"address": "10.250.1.2", "tcp": [8080, 53], "udp": [53]}'
import dgram from 'node:dgram'
import http from 'node:http'

const {address, tcp, udp} = JSON.parse(process.argv[2] ?? '{}')
const report = (event) => process.stdout.write(`${JSON.stringify(event)}\n`)

const listening = []
for (const port of tcp) {
  const server = http.createServer((request, response) => {
    report({kind: 'request', port, method: request.method, url: request.url, host: request.headers.host ?? null})
    response.end(`hello from the other host: ${request.method} ${request.url}`)
  })
  server.on('connection', (socket) => report({kind: 'tcp', port, remote: socket.remoteAddress}))
  listening.push(new Promise((resolve) => server.listen(port, address, resolve)))
}
for (const port of udp) {
  const socket = dgram.createSocket('udp4')
  socket.on('message', (message, remote) => report({kind: 'udp', port, remote: remote.address, bytes: message.length}))
  listening.push(new Promise((resolve) => socket.bind(port, address, resolve)))
}
await Promise.all(listening)
report({kind: 'ready'})
process.on('SIGTERM', () => process.exit(0))
