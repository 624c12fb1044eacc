import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {readFile} from 'node:fs/promises'
import {request} from 'node:http'
import {connect, createServer, type Socket} from 'node:net'
import {join} from 'node:path'

import type {StopResult} from '../../src/client/stop-daemon.js'
import {EXEC_UPGRADE, encodeJsonFrame, FrameType} from '../../src/daemon/protocol.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {sandboxPids, leftoverSandboxes} from '../helpers/daemon.js'
import {eventually, fdCount, removeEverything, spawnDaemon} from '../helpers/daemon-process.js'
import {tempDirs} from '../helpers/tmp.js'

const OLD_VERSION_DAEMON = ['--import', 'tsx', join(PROJECT_ROOT, 'test/helpers/serve-version.ts'), '0.0.1-old']

describe('stopping the daemon', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-stop-')
  let home: string
  let bwrapBefore: Set<number>
  const opened: Socket[] = []

  beforeEach(async () => {
    bwrapBefore = await sandboxPids()
    home = await dirs.make()
  })

  afterEach(async () => {
    for (const socket of opened.splice(0)) socket.destroy()
    await removeEverything(home)
    expect(await leftoverSandboxes(bwrapBefore, home), 'sandboxes of this test still running').to.deep.equal([])
    await dirs.cleanup()
  })

  it('closes every refused upgrade, so its fds stay where they were', async () => {
    const daemon = await spawnDaemon(home)
    await daemon.client.listSandboxes(false)
    const baseline = await fdCount(daemon.pid)
    // Clients that send the whole request and then never hang up: the daemon must.
    const answers = await Promise.all(Array.from({length: 30}, (_, i) => upgradeAndWait(daemon.socketPath, `/v1/sandboxes/cr_UNKNOWN${i}/exec`, opened)))
    for (const answer of answers) expect(answer).to.match(/^HTTP\/1\.1 404 .*sandbox_not_found/s)
    await eventually('the daemon to be back to its fds', async () => (await fdCount(daemon.pid)) <= baseline, 5000)
  })

  it('finishes within 5 s on SIGTERM whatever is open, and leaves the sandboxes running', async () => {
    const daemon = await spawnDaemon(home)
    const sandbox = await daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    // A command streaming to a client that never reads, one waiting quietly, an audit follower, a half-sent request.
    const flood = await daemon.client.startExec(sandbox.sandbox_id, {argv: ['yes'], env: {}, tty: false})
    flood.pause()
    opened.push(flood, await daemon.client.startExec(sandbox.sandbox_id, {argv: ['sleep', '60'], env: {}, tty: false}))
    const follower = request({socketPath: daemon.socketPath, path: `/v1/sandboxes/${sandbox.sandbox_id}/egress?follow=true`})
    follower.on('error', () => undefined)
    follower.end()
    await new Promise((resolve) => follower.once('response', resolve))
    const halfOpen = connect(daemon.socketPath)
    halfOpen.on('error', () => undefined)
    halfOpen.write('GET /v1/ping HTTP/1.1\r\nHost: cleanroom\r\n')
    opened.push(halfOpen)

    const started = Date.now()
    process.kill(daemon.pid, 'SIGTERM')
    await daemon.exited
    expect(Date.now() - started).to.be.below(5000)
    follower.destroy()
    // It closed everything itself: the deadline that exits regardless did not have to.
    expect(await readFile(join(daemon.stateDir, 'daemon.log'), 'utf8')).to.match(/ SIGTERM: stopping; sandboxes keep running\n\S+ stopped\n$/)

    const again = await spawnDaemon(home)
    expect((await again.client.inspectSandbox(sandbox.sandbox_id)).status).to.equal('ready')
  })

  it('stops a daemon of another version with "cleanroom serve stop", which the refusal names, and the sandboxes carry on', async () => {
    const old = await spawnDaemon(home, [], OLD_VERSION_DAEMON)
    const sandbox = await old.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const refused = await runCli(['sandbox', 'ls'], {env: old.env})
    expect(refused.exitCode).to.equal(1)
    expect(refused.stderr).to.include(`Error: the running cleanroom daemon is version 0.0.1-old (pid ${old.pid}) and this cleanroom is`)
    expect(refused.stderr).to.include('Try this: Stop the old daemon: cleanroom serve stop (sandboxes keep running;')

    const stopped = await runCli(['serve', 'stop', '--json'], {env: old.env})
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    expect(JSON.parse(stopped.stdout) as StopResult).to.deep.include({stopped: true, pid: old.pid, version: '0.0.1-old', signal: 'SIGTERM'})
    await old.exited

    const listed = await runCli(['sandbox', 'ls', '--json'], {env: old.env})
    expect(listed.exitCode, listed.stderr).to.equal(0)
    expect((JSON.parse(listed.stdout) as {sandbox_id: string; status: string}[]).map(({sandbox_id, status}) => `${sandbox_id} ${status}`)).to.deep.equal([`${sandbox.sandbox_id} ready`])
    expect((await runCli(['serve', 'stop'], {env: old.env})).stdout).to.match(/^stopped the cleanroom daemon \(pid \d+, version [\d.]+\) with SIGTERM; sandboxes keep running$/)
    expect((await runCli(['serve', 'stop'], {env: old.env})).stdout).to.match(/^no cleanroom daemon is running at \S+cleanroom\.sock$/)
  })

  it('kills a daemon too hung to answer, found through its state dir, after the bound', async () => {
    const daemon = await spawnDaemon(home)
    process.kill(daemon.pid, 'SIGSTOP')
    const stopped = await runCli(['serve', 'stop', '--json'], {env: daemon.env})
    expect(stopped.exitCode, stopped.stderr).to.equal(0)
    expect(JSON.parse(stopped.stdout) as StopResult).to.deep.include({stopped: true, pid: daemon.pid, signal: 'SIGKILL'})
  })

  it('signals nothing when what answers on the socket names a process that does not serve it', async () => {
    const bystander = spawn('sleep', ['60'], {stdio: 'ignore'})
    const socketPath = join(home, 'fake.sock')
    const fake = createServer((socket) => {
      opened.push(socket)
      socket.on('error', () => undefined)
      socket.end(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n${JSON.stringify({version: 'x', api: 'v1', pid: bystander.pid}).padEnd(50)}`)
    })
    await new Promise<void>((resolve) => fake.listen(socketPath, resolve))
    try {
      const refused = await runCli(['serve', 'stop', '--host', `unix://${socketPath}`], {env: {HOME: home, XDG_STATE_HOME: join(home, 'state')}})
      expect(refused.exitCode).to.equal(2)
      expect(refused.stderr).to.include(`Error: pid ${bystander.pid} neither listens on ${socketPath} nor holds the state dir's lock: it is not the cleanroom daemon there, not stopping it`)
      expect(bystander.exitCode).to.equal(null)
    } finally {
      bystander.kill('SIGKILL')
      fake.close()
    }
  })
})

/** Sends an exec upgrade with its start frame, waits for the daemon's answer, and keeps the connection open on our side. */
function upgradeAndWait(socketPath: string, path: string, opened: Socket[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath)
    opened.push(socket)
    let text = ''
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1')
      if (/\r\n\r\n.*\}/s.test(text)) resolve(text)
    })
    socket.on('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: cleanroom\r\nConnection: Upgrade\r\nUpgrade: ${EXEC_UPGRADE}\r\n\r\n`)
    socket.write(encodeJsonFrame(FrameType.start, {argv: ['true']}))
  })
}
