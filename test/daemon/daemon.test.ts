import {expect} from 'chai'
import {access, mkdir, writeFile} from 'node:fs/promises'
import {request} from 'node:http'
import {connect} from 'node:net'
import {join} from 'node:path'

import {DaemonClient} from '../../src/client/client.js'
import {runInSandbox} from '../../src/client/exec.js'
import {runSession} from '../../src/client/session.js'
import {EXEC_UPGRADE, encodeFrame, encodeJsonFrame, FrameType} from '../../src/daemon/protocol.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {leftoverSandboxes, startTestDaemon, testDaemonSuite} from '../helpers/daemon.js'
import {eventually, sandboxDirs, scaled} from '../helpers/daemon-process.js'
import {captureTerminal} from '../helpers/terminal.js'

function raw(socketPath: string, method: string, path: string, body?: string): Promise<{status: number; json: {error?: {code: string; message: string}}}> {
  return new Promise((resolve, reject) => {
    const req = request({socketPath, method, path}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString() || '{}')}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

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

describe('the daemon (cleanroom serve) with the linux-ns backend', function () {
  this.timeout(60_000)
  const suite = testDaemonSuite('cleanroom-daemon-', {each: true})

  async function workspace(): Promise<string> {
    const repo = join(suite.dir, 'repo')
    await mkdir(repo, {recursive: true})
    await writeFile(join(repo, 'README'), 'hello from the repo\n')
    return repo
  }

  it('answers ping with its version, on a socket only its owner can use', async () => {
    expect(await suite.test.client.ping()).to.deep.include({version: 'test', api: 'v1'})
    const {stat} = await import('node:fs/promises')
    expect((await stat(suite.test.socketPath)).mode & 0o777).to.equal(0o600)
  })

  it('answers malformed requests with 400 and a JSON error, and keeps serving', async () => {
    expect(await raw(suite.test.socketPath, 'POST', '/v1/sandboxes', '{not json')).to.deep.include({status: 400})
    expect((await raw(suite.test.socketPath, 'POST', '/v1/sandboxes', '[]')).json.error?.code).to.equal('bad_request')
    expect((await raw(suite.test.socketPath, 'POST', '/v1/sandboxes', '{"policy": {"version": 2}}')).json.error?.code).to.equal('policy_invalid')
    expect((await raw(suite.test.socketPath, 'POST', '/v1/sandboxes/cr_X/execs', '{"argv": []}')).json.error?.message).to.equal('argv must be a non-empty array of strings')
    expect((await raw(suite.test.socketPath, 'POST', '/v1/sandboxes/cr_X/execs', '{"argv": ["true"]}')).status).to.equal(404)
    expect((await raw(suite.test.socketPath, 'GET', '/v1/nothing-here')).status).to.equal(404)
    expect((await raw(suite.test.socketPath, 'DELETE', '/v1/sandboxes/cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA')).json.error?.code).to.equal('sandbox_not_found')
    expect(await suite.test.client.ping()).to.have.property('pid', process.pid)
  })

  it('refuses the requests of a CLI of another version, saying how to replace the daemon, and still answers ping', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const newer = new DaemonClient(suite.test.socketPath, {version: '9.9.9'})
    for (const attempt of [newer.listSandboxes(false), newer.startExec(sandbox.sandbox_id, {argv: ['true'], env: {}, tty: false})]) {
      const error = (await attempt.then(() => undefined, (error_: unknown) => error_)) as CleanroomError
      expect(error.code).to.equal('daemon_version_mismatch')
      expect(error.message).to.equal(`the running cleanroom daemon is version test (pid ${process.pid}) and this cleanroom is 9.9.9`)
      expect(error.suggestions[0]).to.match(/^Stop the old daemon: cleanroom serve stop --host unix:\/\/\S+d\.sock \(sandboxes keep running/)
    }
    expect(await newer.ping()).to.include({version: 'test'})
    expect(await new DaemonClient(suite.test.socketPath, {version: 'test'}).listSandboxes(false)).to.have.length(1)
  })

  it('answers image_not_pulled, naming the reference, for a policy whose image is not in the cache', async () => {
    const ref = `ghcr.io/acme/base@sha256:${'a'.repeat(64)}`
    const policy = {...DEFAULT_POLICY, image_ref: ref, image_digest: `sha256:${'a'.repeat(64)}`}
    const error = await suite.test.client.createSandbox({policy, workspace_source: null}).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('image_not_pulled')
    expect((error as CleanroomError).message).to.equal(`image ${ref} is not in the image cache`)
    expect((error as CleanroomError).details).to.deep.equal({ref})
  })

  it('creates, runs, keeps files between execs, and removes without a trace', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: await workspace()})
    expect(sandbox).to.deep.include({status: 'ready', backend: 'linux-ns', policy_hash: DEFAULT_POLICY.hash})
    expect(sandbox.sandbox_id).to.match(/^cr_[0-9A-Z]{26}$/)

    expect(await suite.test.client.run(sandbox.sandbox_id, {argv: ['cat', 'README'], env: {}})).to.deep.include({exit_code: 0, stdout: 'hello from the repo\n'})
    await suite.test.client.run(sandbox.sandbox_id, {argv: ['sh', '-c', 'echo kept > /workspace/new && echo home > ~/h'], env: {}})
    const second = await suite.test.client.run(sandbox.sandbox_id, {argv: ['sh', '-c', 'cat /workspace/new ~/h'], env: {}})
    expect(second.stdout).to.equal('kept\nhome\n')

    const stateDir = join(suite.test.stateDir, 'sandboxes', sandbox.sandbox_id)
    await access(stateDir)
    const removed = await suite.test.client.removeSandbox(sandbox.sandbox_id)
    expect(removed.status).to.equal('stopped')
    expect(await access(stateDir).then(() => 'exists', () => 'gone')).to.equal('gone')
    expect((await suite.test.client.listSandboxes(false)).map((s) => s.sandbox_id)).not.to.include(sandbox.sandbox_id)
    expect((await suite.test.client.listSandboxes(true)).find((s) => s.sandbox_id === sandbox.sandbox_id)?.status).to.equal('stopped')
  })

  it('streams stdout and stderr apart with binary bytes, forwards stdin, and returns the exit code', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const terminal = captureTerminal(Buffer.from('piped input'))
    const outcome = await runInSandbox(
      suite.test.client,
      sandbox.sandbox_id,
      {argv: ['sh', '-c', "printf '\\000\\377\\001'; cat >&2; exit 7"], env: {}, tty: false},
      terminal,
    )
    expect(outcome).to.deep.equal({exitCode: 7, detached: false})
    expect(terminal.output()).to.deep.equal(Buffer.from([0, 255, 1]))
    expect(terminal.errors().toString()).to.equal('piped input')
  })

  it('runs two executions in one sandbox at the same time', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const [a, b] = await Promise.all([
      suite.test.client.run(sandbox.sandbox_id, {argv: ['sh', '-c', 'sleep 0.3; echo a'], env: {}}),
      suite.test.client.run(sandbox.sandbox_id, {argv: ['sh', '-c', 'sleep 0.3; echo b'], env: {}}),
    ])
    expect([a.stdout, b.stdout]).to.deep.equal(['a\n', 'b\n'])
  })

  it('re-adopts live sandboxes after a restart and marks dead ones failed', async () => {
    const live = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const doomed = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    await suite.test.client.run(live.sandbox_id, {argv: ['sh', '-c', 'echo before > /tmp/mark'], env: {}})
    const doomedInit = (suite.test.daemon.manager.get(doomed.sandbox_id).runtime as {init_pid: number}).init_pid

    await suite.test.daemon.close()
    process.kill(doomedInit, 'SIGKILL')
    suite.test = await startTestDaemon(suite.dir)

    expect((await suite.test.client.inspectSandbox(live.sandbox_id)).status).to.equal('ready')
    expect((await suite.test.client.run(live.sandbox_id, {argv: ['cat', '/tmp/mark'], env: {}})).stdout).to.equal('before\n')
    const failed = await suite.test.client.inspectSandbox(doomed.sandbox_id)
    expect(failed.status).to.equal('failed')
    expect(failed.failure).to.match(/init process is gone/)
    const error = await suite.test.client.run(doomed.sandbox_id, {argv: ['true'], env: {}}).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('sandbox_failed')
    await suite.test.client.removeSandbox(doomed.sandbox_id)
  })

  it('marks a sandbox whose init died failed instead of hanging', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    process.kill((suite.test.daemon.manager.get(sandbox.sandbox_id).runtime as {init_pid: number}).init_pid, 'SIGKILL')
    const error = await suite.test.client.run(sandbox.sandbox_id, {argv: ['true'], env: {}}).catch((error_: unknown) => error_)
    expect(error).to.be.instanceOf(CleanroomError)
    // Recorded by the watch on its init, which may hear of the death a moment after the refused run.
    await eventually('the sandbox to be failed', async () => (await suite.test.client.inspectSandbox(sandbox.sandbox_id)).status === 'failed', 2000)
  })

  it('finds and compiles the policy of a repository it is given, with extra allow rules, and mounts the git root', async () => {
    const repo = await workspace()
    await mkdir(join(repo, '.git'))
    await mkdir(join(repo, 'sub'))
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    default: deny\n    allow:\n      - host: registry.npmjs.org\n        ports: [443]\n')
    const sandbox = await suite.test.client.createSandbox({repository: join(repo, 'sub'), extra_allow: [{host: 'API.example.com', ports: [443]}]})
    expect(sandbox).to.deep.include({policy_source: join(repo, 'cleanroom.yaml'), workspace_source: repo})
    expect(sandbox.policy.allow.map((rule) => rule.host)).to.deep.equal(['api.example.com', 'registry.npmjs.org'])

    const bare = await suite.test.client.createSandbox({repository: suite.dir})
    expect(bare).to.deep.include({policy_source: null, workspace_source: suite.dir})
    expect(bare.policy.hash).to.equal(DEFAULT_POLICY.hash)
  })

  it('refuses a repository given with a policy, a relative one, a broken policy and bad extra rules, creating nothing', async () => {
    const repo = await workspace()
    const refused = (body: Record<string, unknown>) => raw(suite.test.socketPath, 'POST', '/v1/sandboxes', JSON.stringify(body)).then(({json}) => json.error)
    expect(await refused({repository: repo, policy: DEFAULT_POLICY})).to.deep.include({code: 'bad_request'})
    expect(await refused({repository: 'repo'})).to.deep.include({code: 'bad_request', message: 'repository must be an absolute host path'})
    expect(await refused({repository: repo, extra_allow: [{host: 'a.example', ports: ['443']}]})).to.deep.include({code: 'bad_request'})
    expect(await refused({repository: repo, extra_allow: [{host: 'a.example', ports: [0]}]})).to.deep.include({code: 'policy_invalid'})
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    default: allow\n')
    expect((await refused({repository: repo}))?.code).to.equal('policy_invalid')
    expect(await suite.test.client.listSandboxes(true)).to.deep.equal([])
  })

  it('starts an execution in one round trip, and answers a bad start with an HTTP error before anything runs', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const terminal = captureTerminal()
    expect(await runInSandbox(suite.test.client, sandbox.sandbox_id, {argv: ['sh', '-c', 'echo started'], env: {}, tty: false}, terminal)).to.deep.equal({exitCode: 0, detached: false})
    expect(terminal.output().toString()).to.equal('started\n')

    const upgrade = (path: string, first: Buffer) => rawUpgrade(suite.test.socketPath, path, first)
    expect(await upgrade('/v1/sandboxes/cr_nope/exec', encodeJsonFrame(FrameType.start, {argv: ['true']}))).to.match(/^HTTP\/1\.1 404 .*"sandbox_not_found"/s)
    expect(await upgrade(`/v1/sandboxes/${sandbox.sandbox_id}/exec`, encodeJsonFrame(FrameType.stdin, 'x'))).to.match(/^HTTP\/1\.1 400 .*start frame/s)
    expect(await upgrade(`/v1/sandboxes/${sandbox.sandbox_id}/exec`, encodeJsonFrame(FrameType.start, {argv: []}))).to.match(/^HTTP\/1\.1 400 .*non-empty array/s)
    expect(await upgrade(`/v1/sandboxes/${sandbox.sandbox_id}/exec`, encodeFrame(FrameType.start, '{no'))).to.match(/^HTTP\/1\.1 400 .*not JSON/s)
    const oversized = Buffer.from([FrameType.start, 0x7f, 0xff, 0xff, 0xff])
    expect(await upgrade(`/v1/sandboxes/${sandbox.sandbox_id}/exec`, oversized)).to.match(/^HTTP\/1\.1 400 .*exceeds the 1048576-byte limit/s)
  })

  it('still attaches to an execution created with POST …/execs (the two-step form curl users take)', async () => {
    const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    const created = await raw(suite.test.socketPath, 'POST', `/v1/sandboxes/${sandbox.sandbox_id}/execs`, JSON.stringify({argv: ['sh', '-c', 'echo two-step; exit 3']}))
    const execId = (created.json as {exec_id?: string}).exec_id
    const answer = await rawUpgrade(suite.test.socketPath, `/v1/execs/${execId}/attach`, Buffer.alloc(0))
    expect(answer).to.match(/^HTTP\/1\.1 101 /)
    const frames = decodeFrames(Buffer.from(answer.slice(answer.indexOf('\r\n\r\n') + 4), 'latin1'))
    expect(frames.filter((frame) => frame.type === FrameType.stdout).map((frame) => frame.payload.toString()).join('')).to.equal('two-step\n')
    expect(JSON.parse(frames.at(-1)!.payload.toString())).to.deep.include({exit_code: 3})
    expect(await rawUpgrade(suite.test.socketPath, `/v1/execs/${execId}/attach`, Buffer.alloc(0))).to.match(/^HTTP\/1\.1 404 .*exec_not_found/s)
  })

  describe('under concurrent requests', () => {
    it('runs 20 executions in one sandbox at once, each with its own output and exit code', async () => {
      const count = scaled(20, 100)
      const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
      const runs = await Promise.all(
        Array.from({length: count}, async (_, i) => {
          const terminal = captureTerminal()
          const outcome = await runInSandbox(suite.test.client, sandbox.sandbox_id, {argv: ['sh', '-c', `echo out-${i}; echo err-${i} >&2; exit ${i % 7}`], env: {}, tty: false}, terminal)
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
          const outcome = await runSession(suite.test.client, {keep: false, allowAll: false, dir: suite.dir, backend: 'linux-ns', argv: ['sh', '-c', `echo new-${i}; exit ${i % 5}`], env: {}, tty: false, terminal})
          return {exitCode: outcome.exitCode, stdout: terminal.output().toString()}
        }),
      )
      runs.forEach((run, i) => expect(run).to.deep.equal({exitCode: i % 5, stdout: `new-${i}\n`}))
      expect(await suite.test.client.listSandboxes(false)).to.deep.equal([])
      expect(await sandboxDirs(suite.test.stateDir)).to.deep.equal([])
      expect(await leftoverSandboxes(suite.sandboxesBefore, suite.dir)).to.deep.equal([])
    })

    it('answers 10 removals of one sandbox at once with 200, never 500, and removes it once', async () => {
      const sandbox = await suite.test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
      const answers = await Promise.all(Array.from({length: 10}, () => status(suite.test.socketPath, 'DELETE', `/v1/sandboxes/${sandbox.sandbox_id}`)))
      expect(answers).to.deep.equal(Array.from({length: 10}, () => 200))
      expect(await status(suite.test.socketPath, 'DELETE', `/v1/sandboxes/${sandbox.sandbox_id}`)).to.equal(200)
      expect(await status(suite.test.socketPath, 'DELETE', '/v1/sandboxes/cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA')).to.equal(404)
      expect(suite.test.logs.filter((line) => line === `sandbox ${sandbox.sandbox_id}: removed`)).to.have.length(1)
      expect(await sandboxDirs(suite.test.stateDir)).to.deep.equal([])
    })

    it('answers a malformed percent-escape in a path with 400, on plain requests and on upgrades', async () => {
      expect(await status(suite.test.socketPath, 'GET', '/v1/sandboxes/%E0%A4%A')).to.equal(400)
      expect(await status(suite.test.socketPath, 'DELETE', '/v1/sandboxes/%E0%A4%A')).to.equal(400)
      const answer = await rawUpgrade(suite.test.socketPath, '/v1/sandboxes/%E0%A4%A/exec', encodeJsonFrame(FrameType.start, {argv: ['true']}))
      expect(answer).to.match(/^HTTP\/1\.1 400 .*malformed percent-escape/s)
    })
  })
})

/** Sends an upgrade request and `first` at once; resolves to everything the daemon sent until it closed the connection. */
function rawUpgrade(socketPath: string, path: string, first: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath)
    const chunks: Buffer[] = []
    socket.on('data', (chunk: Buffer) => chunks.push(chunk))
    socket.on('end', () => resolve(Buffer.concat(chunks).toString('latin1')))
    socket.on('error', reject)
    socket.write(`GET ${path} HTTP/1.1\r\nHost: cleanroom\r\nConnection: Upgrade\r\nUpgrade: ${EXEC_UPGRADE}\r\n\r\n`)
    socket.write(first)
  })
}

function decodeFrames(bytes: Buffer): {type: number; payload: Buffer}[] {
  const frames: {type: number; payload: Buffer}[] = []
  for (let offset = 0; offset + 5 <= bytes.length; ) {
    const length = bytes.readUInt32BE(offset + 1)
    frames.push({type: bytes.readUInt8(offset), payload: bytes.subarray(offset + 5, offset + 5 + length)})
    offset += 5 + length
  }
  return frames
}
