import {expect} from 'chai'
import {request} from 'node:http'
import {connect} from 'node:net'

import {runInSandbox} from '../../src/client/exec.js'
import {runSession} from '../../src/client/session.js'
import {EXEC_UPGRADE, encodeJsonFrame, FrameType} from '../../src/daemon/protocol.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {bwrapPids, leftoverSandboxes, mountsMentioning, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {sandboxDirs, scaled} from '../helpers/daemon-process.js'
import {captureTerminal} from '../helpers/terminal.js'
import {tempDirs} from '../helpers/tmp.js'

function status(socketPath: string, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, method, path}, (res) => {
      res.resume()
      res.on('end', () => resolve(res.statusCode ?? 0))
    })
    req.on('error', reject)
    req.end()
  })
}

describe('the daemon under concurrent requests', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-concurrency-')
  let dir: string
  let test: TestDaemon
  let bwrapBefore: Set<number>

  beforeEach(async () => {
    bwrapBefore = await bwrapPids()
    dir = await dirs.make()
    test = await startTestDaemon(dir)
  })

  afterEach(async () => {
    await test.daemon.close({shutdownSandboxes: true})
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this test still running').to.deep.equal([])
    expect(await mountsMentioning(dir)).to.deep.equal([])
    await dirs.cleanup()
  })

  it('runs 20 executions in one sandbox at once, each with its own output and exit code', async () => {
    const count = scaled(20, 100)
    const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const runs = await Promise.all(
      Array.from({length: count}, async (_, i) => {
        const terminal = captureTerminal()
        const outcome = await runInSandbox(test.client, sandbox.sandbox_id, {argv: ['sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${i % 7}`], env: {}, tty: false}, terminal)
        return {outcome, stdout: terminal.output().toString(), stderr: terminal.errors().toString()}
      }),
    )
    runs.forEach((run, i) => expect(run).to.deep.equal({outcome: {exitCode: i % 7, detached: false}, stdout: `out-${i}\n`, stderr: `err-${i}\n`}))
  })

  it('runs 20 commands in new sandboxes at once, each removed afterwards', async () => {
    const count = scaled(20, 100)
    const runs = await Promise.all(
      Array.from({length: count}, async (_, i) => {
        const terminal = captureTerminal()
        const outcome = await runSession(test.client, {keep: false, allowAll: false, dir, backend: 'linux-ns', argv: ['sh', '-c', `echo new-${i}; exit ${i % 5}`], env: {}, tty: false, terminal})
        return {exitCode: outcome.exitCode, stdout: terminal.output().toString()}
      }),
    )
    runs.forEach((run, i) => expect(run).to.deep.equal({exitCode: i % 5, stdout: `new-${i}\n`}))
    expect(await test.client.listSandboxes(false)).to.deep.equal([])
    expect(await sandboxDirs(test.stateDir)).to.deep.equal([])
    expect(await leftoverSandboxes(bwrapBefore, dir)).to.deep.equal([])
  })

  it('answers 10 removals of one sandbox at once with 200, never 500, and removes it once', async () => {
    const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const answers = await Promise.all(Array.from({length: 10}, () => status(test.socketPath, 'DELETE', `/v1/sandboxes/${sandbox.sandbox_id}`)))
    expect(answers).to.deep.equal(Array.from({length: 10}, () => 200))
    expect(await status(test.socketPath, 'DELETE', `/v1/sandboxes/${sandbox.sandbox_id}`)).to.equal(200)
    expect(await status(test.socketPath, 'DELETE', '/v1/sandboxes/cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA')).to.equal(404)
    expect(test.logs.filter((line) => line === `sandbox ${sandbox.sandbox_id}: removed`)).to.have.length(1)
    expect(await sandboxDirs(test.stateDir)).to.deep.equal([])
  })

  it('answers a malformed percent-escape in a path with 400, on plain requests and on upgrades', async () => {
    expect(await status(test.socketPath, 'GET', '/v1/sandboxes/%E0%A4%A')).to.equal(400)
    expect(await status(test.socketPath, 'DELETE', '/v1/sandboxes/%E0%A4%A')).to.equal(400)
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(test.socketPath)
      const chunks: Buffer[] = []
      socket.on('data', (chunk: Buffer) => chunks.push(chunk))
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')))
      socket.on('error', reject)
      socket.write(`GET /v1/sandboxes/%E0%A4%A/exec HTTP/1.1\r\nHost: cleanroom\r\nConnection: Upgrade\r\nUpgrade: ${EXEC_UPGRADE}\r\n\r\n`)
      socket.write(encodeJsonFrame(FrameType.start, {argv: ['true']}))
    })
    expect(answer).to.match(/^HTTP\/1\.1 400 .*malformed percent-escape/s)
  })
})
