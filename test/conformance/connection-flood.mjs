// Run inside a sandbox by boundary.test.ts: opens COUNT idle connections to the
// sandbox's egress proxy, in batches, sends nothing, holds them HOLD_MS, and prints
// {opened, failed, stillOpen, closedByProxy} as JSON. A connection the proxy closes
// right away counts as closedByProxy.
//   node connection-flood.mjs COUNT HOLD_MS
import {connect} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

const [count, holdMs] = process.argv.slice(2).map(Number)
const BATCH = 250
const sockets = []
let failed = 0

for (let start = 0; start < count; start += BATCH) {
  const batch = Array.from({length: Math.min(BATCH, count - start)}, () =>
    new Promise((resolve) => {
      const socket = connect(3128, '127.0.0.1')
      socket.on('error', () => undefined)
      socket.once('connect', () => {
        sockets.push(socket)
        resolve()
      })
      socket.once('close', () => {
        if (!socket.connecting && !sockets.includes(socket)) failed++
        resolve()
      })
    }),
  )
  await Promise.all(batch)
}
await sleep(holdMs)
const stillOpen = sockets.filter((socket) => !socket.destroyed && socket.readyState === 'open').length
process.stdout.write(JSON.stringify({opened: sockets.length, failed, stillOpen, closedByProxy: sockets.length - stillOpen}))
for (const socket of sockets) socket.destroy()
