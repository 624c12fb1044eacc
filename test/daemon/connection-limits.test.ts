import {expect} from 'chai'
import {connect, createServer, type Server, type Socket} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

import {capConnections, ConnectionBudget, daemonConnectionLimit, type LimitReached, openFileLimit} from '../../src/daemon/connection-limits.js'

/** Opens `count` connections to `port` and waits until each is either open or closed by the server. */
async function open(port: number, count: number): Promise<Socket[]> {
  const sockets = await Promise.all(
    Array.from({length: count}, () =>
      new Promise<Socket>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1')
        socket.once('connect', () => resolve(socket))
        socket.once('error', reject)
      }),
    ),
  )
  await sleep(200)
  return sockets
}

const stillOpen = (sockets: Socket[]) => sockets.filter((socket) => !socket.destroyed && socket.readyState === 'open')

describe('connection limits of the egress proxies', () => {
  const servers: Server[] = []
  const sockets: Socket[] = []

  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy()
    await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))))
  })

  /** A listener standing in for one sandbox's proxy: served connections are kept open; refusals are recorded. */
  async function sandboxProxy(perSandbox: number, budget: ConnectionBudget): Promise<{port: number; served: Socket[]; notes: LimitReached[]}> {
    const served: Socket[] = []
    const notes: LimitReached[] = []
    const server = createServer()
    capConnections(server, {perSandbox, budget}, (socket) => served.push(socket), (reached) => notes.push(reached))
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    servers.push(server)
    return {port: (server.address() as {port: number}).port, served, notes}
  }

  it('gives the daemon a quarter of its fd limit, and two fds per connection of the rest', () => {
    expect(daemonConnectionLimit(20_000)).to.equal(7500)
    expect(daemonConnectionLimit(1024)).to.equal(384)
    expect(daemonConnectionLimit(100)).to.equal(1)
    expect(openFileLimit()).to.be.above(0)
  })

  it('closes a sandbox\'s connections past its limit at once and notes the burst once', async () => {
    const proxy = await sandboxProxy(5, new ConnectionBudget(100))
    const first = await open(proxy.port, 8)
    sockets.push(...first)
    expect(stillOpen(first)).to.have.length(5)
    expect(proxy.served).to.have.length(5)
    expect(proxy.notes).to.deep.equal([{limit: 'sandbox', max: 5}])

    // Still at the limit: more refusals, no new note.
    sockets.push(...(await open(proxy.port, 3)))
    expect(proxy.notes).to.have.length(1)

    // Below half the limit, a new burst is noted again.
    for (const socket of proxy.served.splice(0, 3)) socket.destroy()
    await sleep(100)
    sockets.push(...(await open(proxy.port, 4)))
    expect(proxy.notes).to.deep.equal([{limit: 'sandbox', max: 5}, {limit: 'sandbox', max: 5}])
  })

  it('shares the daemon\'s budget across sandboxes and gives a closed connection\'s share back', async () => {
    const budget = new ConnectionBudget(6)
    const one = await sandboxProxy(5, budget)
    const two = await sandboxProxy(5, budget)
    sockets.push(...(await open(one.port, 5)))
    const second = await open(two.port, 3)
    sockets.push(...second)
    expect(stillOpen(second)).to.have.length(1)
    expect(two.notes).to.deep.equal([{limit: 'daemon', max: 6}])
    expect(one.notes).to.deep.equal([])

    for (const socket of one.served.splice(0, 2)) socket.destroy()
    await sleep(100)
    const third = await open(two.port, 2)
    sockets.push(...third)
    expect(stillOpen(third)).to.have.length(2)
  })
})
