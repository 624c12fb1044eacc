import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import {access, chown, lstat, mkdir, open, readFile, stat, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {DaemonClient} from '../../src/client/client.js'
import {DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import {startDaemon} from '../../src/daemon/daemon.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import type {LinuxNsRuntime} from '../../src/sandbox/backends/linux-ns/runtime.js'
import {isRunning, processFacts} from '../../src/sandbox/backends/linux-ns/runtime.js'
import {claimHostUid, HOST_UID_RANGE, reclaimStaleUids, releaseHostUid, UID_REGISTRY, type UidClaim} from '../../src/sandbox/backends/linux-ns/uids.js'
import {newSandboxId} from '../../src/sandbox/ids.js'
import type {SandboxRecord} from '../../src/sandbox/types.js'
import {isolatedEnv, PROJECT_ROOT} from '../helpers/cli.js'
import {sandboxPids, leftoverSandboxes} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {waitFor} from './helpers.js'

const RUN = join(PROJECT_ROOT, 'bin/run.js')

/** A process running as `uid` until killed. */
function processAs(uid: number): ChildProcess {
  return spawn('sleep', ['600'], {uid, gid: uid, stdio: 'ignore'})
}

/** The pid and start time of a process that has exited: a daemon that is gone. */
async function goneProcess(): Promise<{pid: number; startTime: number}> {
  const child = spawn('sleep', ['0.3'], {stdio: 'ignore'})
  const facts = await processFacts(child.pid!)
  await new Promise((resolve) => child.once('exit', resolve))
  return {pid: child.pid!, startTime: facts!.startTime}
}

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

describe('host uids claimed machine-wide', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-uids-')
  const children: ChildProcess[] = []

  before(() => {
    expect(process.geteuid?.(), 'only a root daemon claims host uids: run these tests as root').to.equal(0)
  })

  afterEach(async () => {
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await new Promise((resolve) => child.once('exit', resolve))
      }
    }
    await dirs.cleanup()
  })

  describe('the registry', () => {
    let registry: string
    let stateDir: string

    beforeEach(async () => {
      const dir = await dirs.make()
      registry = join(dir, 'uids')
      stateDir = join(dir, 'state')
      await mkdir(registry, {mode: 0o700})
      await mkdir(stateDir, {mode: 0o700})
    })

    it('never hands out a uid that is claimed or that any process runs as', async () => {
      // A range of three: one claimed, one that a process runs as, one free.
      const range = {first: HOST_UID_RANGE.last - 2, last: HOST_UID_RANGE.last}
      const [claimed, busy, free] = [range.first, range.first + 1, range.last]
      await writeFile(join(registry, String(claimed)), '')
      const sleeper = processAs(busy)
      children.push(sleeper)
      await waitFor('the process of the busy uid', async () => (await processFacts(sleeper.pid!))?.uid === busy)

      const id = newSandboxId()
      expect(await claimHostUid(id, stateDir, {registry, range})).to.equal(free)
      const claim = JSON.parse(await readFile(join(registry, String(free)), 'utf8')) as UidClaim
      expect(claim).to.deep.include({uid: free, sandbox_id: id, state_dir: stateDir, daemon_pid: process.pid})
      const dirStats = await stat(stateDir)
      expect([dirStats.uid, dirStats.gid, dirStats.mode & 0o7777]).to.deep.equal([0, free, 0o710])

      const full = await claimHostUid(newSandboxId(), stateDir, {registry, range}).catch((error: unknown) => error)
      expect(full).to.be.instanceOf(CleanroomError)
      expect((full as CleanroomError).message).to.equal(`every host uid from ${range.first} to ${range.last} is claimed in ${registry} or runs a process`)

      sleeper.kill('SIGKILL')
      await new Promise((resolve) => sleeper.once('exit', resolve))
      expect(await claimHostUid(newSandboxId(), stateDir, {registry, range})).to.equal(busy)
    })

    it('reclaims only claims whose daemon is gone and whose uid runs no process, and locks the old state dir away', async () => {
      const gone = await goneProcess()
      const self = await processFacts(process.pid)
      const [died, lives, ownDaemon, garbageOld, garbageNew] = [200_101, 200_102, 200_103, 200_104, 200_105]
      const claimOf = (uid: number, daemon: {pid: number; startTime: number}, state: string): UidClaim => ({
        uid,
        sandbox_id: newSandboxId(),
        state_dir: state,
        daemon_pid: daemon.pid,
        daemon_start_time: daemon.startTime,
        claimed_at: new Date().toISOString(),
      })
      const diedState = join(stateDir, 'died')
      await mkdir(diedState, {mode: 0o710})
      await chown(diedState, 0, died)
      const write = (uid: number, text: string) => writeFile(join(registry, String(uid)), text, {mode: 0o600})
      const diedClaim = claimOf(died, gone, diedState)
      await write(died, JSON.stringify(diedClaim))
      await write(lives, JSON.stringify(claimOf(lives, gone, join(stateDir, 'lives'))))
      await write(ownDaemon, JSON.stringify(claimOf(ownDaemon, {pid: process.pid, startTime: self!.startTime}, join(stateDir, 'own'))))
      await write(garbageOld, '')
      await write(garbageNew, '{"uid":')
      const twoMinutesAgo = new Date(Date.now() - 120_000)
      await utimes(join(registry, String(garbageOld)), twoMinutesAgo, twoMinutesAgo)
      const sleeper = processAs(lives)
      children.push(sleeper)
      await waitFor('the process of the live sandbox uid', async () => (await processFacts(sleeper.pid!))?.uid === lives)

      const reclaimed = await reclaimStaleUids(registry)
      expect(reclaimed).to.have.deep.members([{uid: died, claim: diedClaim}, {uid: garbageOld}])
      expect(await Promise.all([died, lives, ownDaemon, garbageOld, garbageNew].map((uid) => exists(join(registry, String(uid)))))).to.deep.equal([false, true, true, false, true])
      const locked = await stat(diedState)
      expect([locked.uid, locked.gid, locked.mode & 0o7777]).to.deep.equal([0, 0, 0o700])

      // Released only by the sandbox that holds the claim.
      await releaseHostUid(ownDaemon, join(stateDir, 'another'), registry)
      expect(await exists(join(registry, String(ownDaemon)))).to.equal(true)
      await releaseHostUid(ownDaemon, join(stateDir, 'own'), registry)
      expect(await exists(join(registry, String(ownDaemon)))).to.equal(false)
    })
  })

  describe('with real daemons', () => {
    let bwrapBefore: Set<number>
    let base: string

    beforeEach(async () => {
      bwrapBefore = await sandboxPids()
      base = await dirs.make()
    })

    afterEach(async () => {
      expect(await leftoverSandboxes(bwrapBefore, base), 'sandboxes of this test still running').to.deep.equal([])
    })

    /** `cleanroom serve` in a process of its own, with its own home (state dir and socket). */
    async function serve(name: string): Promise<{child: ChildProcess; client: DaemonClient; stateDir: string}> {
      const home = join(base, name)
      await mkdir(home, {mode: 0o700})
      const env = isolatedEnv(home)
      const socketPath = join(env.XDG_RUNTIME_DIR!, 'cleanroom', 'cleanroom.sock')
      const log = await open(join(home, 'daemon.log'), 'a')
      const child = spawn(process.execPath, [RUN, 'serve'], {env: {PATH: process.env.PATH, ...env}, stdio: ['ignore', log.fd, log.fd]})
      await log.close()
      children.push(child)
      const client = new DaemonClient(socketPath)
      await waitFor(`the daemon ${name} to listen`, () => client.ping().then(() => true, () => false), 20_000)
      return {child, client, stateDir: join(env.XDG_STATE_HOME!, 'cleanroom')}
    }

    async function recordOf(stateDir: string, id: string): Promise<SandboxRecord & {runtime: LinuxNsRuntime}> {
      return JSON.parse(await readFile(join(stateDir, 'sandboxes', id, 'state.json'), 'utf8')) as SandboxRecord & {runtime: LinuxNsRuntime}
    }

    it('two daemons with different state dirs creating sandboxes at once never share a uid', async () => {
      const daemons = [await serve('one'), await serve('two')]
      const created = await Promise.all(daemons.flatMap((daemon) => Array.from({length: 6}, () => daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null}).then((sandbox) => ({daemon, id: sandbox.sandbox_id})))))
      const claims: UidClaim[] = []
      for (const {daemon, id} of created) {
        const {runtime} = await recordOf(daemon.stateDir, id)
        const claim = JSON.parse(await readFile(join(UID_REGISTRY, String(runtime.host_uid)), 'utf8')) as UidClaim
        expect(claim).to.deep.include({sandbox_id: id, state_dir: join(daemon.stateDir, 'sandboxes', id), daemon_pid: daemon.child.pid})
        claims.push(claim)
      }
      expect(new Set(claims.map((claim) => claim.uid)).size).to.equal(12)
      for (const {daemon, id} of created) await daemon.client.removeSandbox(id)
      expect(await Promise.all(claims.map((claim) => exists(join(UID_REGISTRY, String(claim.uid)))))).to.deep.equal(claims.map(() => false))
    })

    it("after a daemon is killed, the next one reclaims the uid and cgroup of a sandbox that died, never those of one that lives", async () => {
      const first = await serve('first')
      const live = (await first.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})).sandbox_id
      const dead = (await first.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})).sandbox_id
      const [liveRuntime, deadRuntime] = [(await recordOf(first.stateDir, live)).runtime, (await recordOf(first.stateDir, dead)).runtime]
      const firstGone = first.child.exitCode === null && first.child.signalCode === null ? new Promise((resolve) => first.child.once('exit', resolve)) : Promise.resolve()
      first.child.kill('SIGKILL')
      // Until the killed daemon is gone its state lock is held, and the next one would be refused.
      await firstGone
      process.kill(deadRuntime.init_pid, 'SIGKILL')
      await waitFor('the dead sandbox to be gone', async () => !(await isRunning(deadRuntime.init_pid, deadRuntime.init_start_time)) && !(await isRunning(deadRuntime.bwrap_pid, deadRuntime.bwrap_start_time)))
      const claimPath = (runtime: LinuxNsRuntime) => join(UID_REGISTRY, String(runtime.host_uid))
      expect(await exists(claimPath(deadRuntime)), 'nothing has released the dead sandbox claim yet').to.equal(true)

      const next = await startDaemon({socketPath: join(base, 'next.sock'), stateDir: first.stateDir, config: DEFAULT_RUNTIME_CONFIG, version: 'test', log: () => undefined})
      try {
        expect(next.manager.get(live).status).to.equal('ready')
        expect(next.manager.get(dead).status).to.equal('failed')
        expect(await exists(claimPath(deadRuntime)), 'the claim of the sandbox that died').to.equal(false)
        const deadCgroups = Object.values(deadRuntime.cgroup?.dirs ?? {})
        expect(deadCgroups).to.not.be.empty
        expect(await Promise.all(deadCgroups.map(exists)), 'the cgroup of the sandbox that died').to.deep.equal(deadCgroups.map(() => false))
        const deadState = await lstat(deadRuntime.state_dir)
        expect([deadState.uid, deadState.gid, deadState.mode & 0o7777], 'its state dir, out of reach of the uid').to.deep.equal([0, 0, 0o700])

        expect(await exists(claimPath(liveRuntime)), 'the claim of the sandbox that lives').to.equal(true)
        expect(await Promise.all(Object.values(liveRuntime.cgroup!.dirs).map(exists))).to.deep.equal(Object.values(liveRuntime.cgroup!.dirs).map(() => true))
        expect((await next.manager.run(live, {argv: ['true'], env: {}, tty: false}).then((process) => process.exited)).exit_code).to.equal(0)
      } finally {
        await next.close({shutdownSandboxes: true})
      }
      expect(await exists(claimPath(liveRuntime)), 'the claim of the live sandbox after rm').to.equal(false)
      expect(await Promise.all(Object.values(liveRuntime.cgroup!.dirs).map(exists))).to.deep.equal(Object.values(liveRuntime.cgroup!.dirs).map(() => false))
    })
  })
})
