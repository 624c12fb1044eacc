import {expect} from 'chai'
import {createSocket} from 'node:dgram'
import {connect} from 'node:net'

import {sandboxesOf, until} from '../sandbox.js'
import {DNS, hostAddresses, isLinkLocal, OTHER_HTTP} from './shared.js'
import type {EgressSuite} from './suite.js'

/** The control: the targets record what reaches them, so "nothing reached it" means something. */
export function controlTargets(suite: EgressSuite): void {
  it('control: every target records what reaches it (so "nothing reached it" means something)', async () => {
    const touch = (host: string, port?: number) =>
      new Promise<void>((resolve, reject) => {
        const socket = port === undefined ? connect({path: host}) : connect({host, port})
        socket.once('connect', () => socket.end(() => resolve()))
        socket.once('error', reject)
      })
    for (const target of [suite.allowedWeb, suite.deniedWeb, suite.unlistedWeb, suite.gitTls]) await touch('127.0.0.1', target.port)
    const own = hostAddresses().filter((address) => !isLinkLocal(address))
    for (const address of own) await touch(address, suite.everyAddress.port)
    await touch(suite.other.address, OTHER_HTTP)
    await touch(suite.other.address, DNS)
    const datagram = createSocket('udp4')
    await new Promise<void>((resolve) => datagram.send('control', suite.udp.port, '127.0.0.1', () => resolve()))
    await new Promise<void>((resolve) => datagram.send('control', DNS, suite.other.address, () => resolve()))
    datagram.close()
    await touch(`\0${suite.abstract.name}`)
    await until(async () => suite.udp.datagrams.length === 1 && suite.abstract.connections === 1 && suite.other.since(suite.otherMark).length === 3 && suite.everyAddress.connections.length === own.length, 3000, 'every target to record its connection')
    for (const target of [suite.allowedWeb, suite.deniedWeb, suite.unlistedWeb, suite.gitTls]) expect(target.connections, target.name).to.have.length(1)
    expect(suite.other.since(suite.otherMark).map((event) => `${event.kind}:${event.port}`).sort()).to.deep.equal(['tcp:53', `tcp:${OTHER_HTTP}`, 'udp:53'])
    // And the leak check at the end sees this suite's sandboxes.
    expect(await sandboxesOf(suite.sandboxesBefore, suite.dir)).to.have.length.of.at.least(4)
  })
}
