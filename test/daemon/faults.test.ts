import {expect} from 'chai'
import {execa} from 'execa'
import {access, mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {RUN_SCRIPT} from '../helpers/cli.js'
import {sandboxPids, leftoverSandboxes, mountsMentioning, sandboxesOf, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {eventually, removeEverything, sandboxDirs, spawnDaemon} from '../helpers/daemon-process.js'
import {tempDirs} from '../helpers/tmp.js'

describe('the daemon under faults', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-faults-')
  let dir: string
  let bwrapBefore: Set<number>
  /** A test that spawned `cleanroom serve`: its daemon and sandboxes go in afterEach. */
  let spawned = false

  beforeEach(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    spawned = false
  })

  afterEach(async () => {
    if (spawned) await removeEverything(dir)
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this test still running').to.deep.equal([])
    expect(await mountsMentioning(dir)).to.deep.equal([])
    await dirs.cleanup()
  })

  describe('with a daemon in this process', () => {
    let test: TestDaemon

    beforeEach(async () => {
      test = await startTestDaemon(dir, undefined, {ephemeralAttachMs: 300})
    })

    afterEach(async () => {
      await test.daemon.close({shutdownSandboxes: true})
    })

    it('records the death of a sandbox whose init is killed at once, with the reason, and closes its egress', async () => {
      const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
      expect((await test.client.inspectSandbox(sandbox.sandbox_id)).egress?.listening).to.equal(true)
      process.kill(initPid(test, sandbox.sandbox_id), 'SIGKILL')
      await eventually('the sandbox to be failed', async () => (await test.client.inspectSandbox(sandbox.sandbox_id)).status === 'failed', 2000)
      const failed = await test.client.inspectSandbox(sandbox.sandbox_id)
      expect(failed.failure).to.match(/^its init process exited \(the sandbox's bwrap ended with /)
      expect(failed.egress?.listening).to.equal(false)
      expect(test.logs.join('\n')).to.include(`sandbox ${sandbox.sandbox_id}: failed: its init process exited`)
    })

    it('records the death of an adopted sandbox, found by its watch, within two seconds', async () => {
      const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
      await test.daemon.close()
      test = await startTestDaemon(dir, undefined, {ephemeralAttachMs: 300})
      expect((await test.client.inspectSandbox(sandbox.sandbox_id)).status).to.equal('ready')
      process.kill(initPid(test, sandbox.sandbox_id), 'SIGKILL')
      await eventually('the adopted sandbox to be failed', async () => (await test.client.inspectSandbox(sandbox.sandbox_id)).status === 'failed', 2500)
      expect((await test.client.inspectSandbox(sandbox.sandbox_id)).failure).to.match(/^its init process exited \(found gone at /)
    })

    it('removes a sandbox made for one command when nothing runs in it (its client died between create and exec)', async () => {
      const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null, ephemeral: true})
      expect(sandbox.ephemeral).to.equal(true)
      await eventually('the unclaimed sandbox to go', async () => (await test.client.listSandboxes(false)).length === 0, 3000)
      expect(await sandboxDirs(test.stateDir)).to.deep.equal([])
      expect(await sandboxesOf(bwrapBefore, dir)).to.deep.equal([])
    })

    it('does not answer a removal of a sandbox still being created before it is gone, and the create reports it', async () => {
      const creating = test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null}).catch((error: unknown) => error)
      // Watched in this process, without a round trip: the removal goes out as soon as the record exists.
      await eventually('the create to start', () => test.daemon.manager.list(false).length === 1, 5000, 1)
      const [provisioning] = test.daemon.manager.list(false)
      expect(provisioning?.status).to.equal('provisioning')
      const removed = await test.client.removeSandbox(provisioning!.sandbox_id)
      expect(removed.status).to.equal('stopped')
      expect(await sandboxesOf(bwrapBefore, dir), 'processes of the removed sandbox').to.deep.equal([])
      expect(await sandboxDirs(test.stateDir)).to.deep.equal([])
      const error = (await creating) as CleanroomError
      expect(error.code).to.equal('sandbox_not_found')
      expect(error.message).to.equal(`sandbox ${provisioning!.sandbox_id} was removed while it was being created`)
      expect((await test.client.listSandboxes(false)).length).to.equal(0)
    })
  })

  it('removes the sandbox of an exec whose CLI is killed, and the command with it', async () => {
    spawned = true
    const daemon = await spawnDaemon(dir)
    const repo = join(dir, 'repo')
    await mkdir(repo)
    await execa('git', ['init', '-q', repo])
    const cli = execa(process.execPath, [RUN_SCRIPT, 'exec', '--', 'sh', '-c', 'echo started; exec sleep 60'], {env: daemon.env, cwd: repo, reject: false})
    await new Promise<void>((resolve) => cli.stdout!.on('data', (chunk: Buffer) => chunk.toString().includes('started') && resolve()))
    const [sandbox] = await daemon.client.listSandboxes(false)
    expect(sandbox?.ephemeral).to.equal(true)
    cli.kill('SIGKILL')
    await cli
    await eventually('the sandbox to be removed', async () => (await daemon.client.listSandboxes(false)).length === 0, 5000)
    expect(await leftoverSandboxes(bwrapBefore, dir)).to.deep.equal([])
    expect(await sandboxDirs(daemon.stateDir)).to.deep.equal([])
  })

  it('kills and removes the sandboxes a daemon killed during their creates left half-made', async () => {
    spawned = true
    const daemon = await spawnDaemon(dir)
    const creates = Array.from({length: 8}, () => daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null}).catch((error: unknown) => error))
    await eventually('a create to begin', async () => (await sandboxDirs(daemon.stateDir)).length > 0, 10_000)
    process.kill(daemon.pid, 'SIGKILL')
    await daemon.exited
    await Promise.all(creates)

    const again = await spawnDaemon(dir)
    const listed = await again.client.listSandboxes(true)
    for (const sandbox of listed) expect(sandbox.status).to.equal('ready')
    // What is on disk is what is listed; every process running belongs to a listed sandbox (outer bwrap and init: two each).
    expect(await sandboxDirs(again.stateDir)).to.deep.equal(listed.map((sandbox) => sandbox.sandbox_id))
    expect((await sandboxesOf(bwrapBefore, dir)).length).to.equal(2 * listed.length)
    for (const sandbox of listed) expect((await again.client.run(sandbox.sandbox_id, {argv: ['true'], env: {}})).exit_code).to.equal(0)
    for (const sandbox of listed) await again.client.removeSandbox(sandbox.sandbox_id)
    expect(await leftoverSandboxes(bwrapBefore, dir)).to.deep.equal([])
    expect(await access(join(again.stateDir, 'sandboxes')).then(() => sandboxDirs(again.stateDir))).to.deep.equal([])
  })
})

function initPid(test: TestDaemon, id: string): number {
  return (test.daemon.manager.get(id).runtime as {init_pid: number}).init_pid
}
