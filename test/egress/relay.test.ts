import {expect} from 'chai'
import {connect, createServer, type Server, type Socket} from 'node:net'
import {join} from 'node:path'

import type {EgressAttempt} from '../../src/egress/attempt.js'
import {splice} from '../../src/egress/relay.js'
import {tempDirs} from '../helpers/tmp.js'

describe('egress relay', () => {
  const dirs = tempDirs('cleanroom-relay-')
  const servers: Server[] = []
  const sockets: Socket[] = []
  afterEach(async () => {
    for (const socket of sockets.splice(0)) socket.destroy()
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve))
    await dirs.cleanup()
  })

  it('closes a sandbox connection that came over a unix socket when the destination resets (a reset is only for TCP)', async () => {
    // The destination resets the connection once it has read something.
    const destination = createServer((socket) => socket.once('data', () => socket.resetAndDestroy()))
    servers.push(destination)
    await new Promise<void>((resolve) => destination.listen(0, '127.0.0.1', () => resolve()))
    const {port} = destination.address() as {port: number}

    // The sandbox's side arrives over a unix socket, as gvisor's forwarder brings it.
    const path = join(await dirs.make(), 'egress.sock')
    const proxy = createServer()
    servers.push(proxy)
    const accepted = new Promise<Socket>((resolve) => proxy.once('connection', resolve))
    await new Promise<void>((resolve) => proxy.listen(path, () => resolve()))
    const sandbox = connect(path)
    sandbox.on('error', () => undefined)
    const sandboxClosed = new Promise((resolve) => sandbox.once('close', resolve))
    const client = await accepted
    const upstream = connect(port, '127.0.0.1')
    upstream.on('error', () => undefined)
    sockets.push(sandbox, client, upstream)
    await new Promise((resolve) => upstream.once('connect', resolve))

    splice({client} as EgressAttempt, upstream, Buffer.alloc(0))
    sandbox.write('hello')
    await sandboxClosed
    expect(client.destroyed).to.equal(true)
  })
})
