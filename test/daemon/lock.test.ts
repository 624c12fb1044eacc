import {expect} from 'chai'
import {access, readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {type DaemonOwner, StateLock} from '../../src/daemon/lock.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {runCli} from '../helpers/cli.js'
import {sandboxPids, leftoverSandboxes} from '../helpers/daemon.js'
import {type DaemonProcess, removeEverything, sandboxDirs, spawnDaemon} from '../helpers/daemon-process.js'
import {tempDirs} from '../helpers/tmp.js'

/** Every record's bytes and time of last change: a refused daemon must not have touched one. */
async function records(stateDir: string): Promise<string[]> {
  return Promise.all(
    (await sandboxDirs(stateDir)).map(async (id) => {
      const path = join(stateDir, 'sandboxes', id, 'state.json')
      return `${id} ${(await stat(path)).mtimeMs} ${await readFile(path, 'utf8')}`
    }),
  )
}

describe('one daemon per state dir', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-lock-')
  let home: string
  let daemon: DaemonProcess
  let bwrapBefore: Set<number>
  let recordsBefore: string[]

  before(async () => {
    bwrapBefore = await sandboxPids()
    home = await dirs.make()
    daemon = await spawnDaemon(home)
    for (let i = 0; i < 3; i++) await daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    recordsBefore = await records(daemon.stateDir)
  })

  afterEach(async () => {
    expect(await records(daemon.stateDir), 'the records').to.deep.equal(recordsBefore)
    expect((await daemon.client.listSandboxes(false)).map((sandbox) => sandbox.status)).to.deep.equal(['ready', 'ready', 'ready'])
    expect((await daemon.client.ping()).pid).to.equal(daemon.pid)
  })

  after(async () => {
    await removeEverything(home)
    expect(await leftoverSandboxes(bwrapBefore, home), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })

  const named = () => `Error: another cleanroom daemon owns the state in ${daemon.stateDir} (pid ${daemon.pid}, version `

  it('refuses a second `cleanroom serve`, naming the first, and touches no record', async () => {
    const second = await runCli(['serve'], {env: daemon.env})
    expect(second.exitCode).to.equal(1)
    expect(second.stderr).to.include(named())
    expect(second.stderr).to.include(`listening on unix://${daemon.socketPath}); one daemon serves a state dir`)
    expect(second.stderr).to.include(`Try this: Or stop it first: cleanroom serve stop --host unix://${daemon.socketPath}`)
  })

  it('refuses `cleanroom serve --listen` on another socket before it listens there', async () => {
    const other = join(home, 'other.sock')
    const second = await runCli(['serve', '--listen', `unix://${other}`], {env: daemon.env})
    expect(second.exitCode).to.equal(1)
    expect(second.stderr).to.include(named())
    expect(await access(other).then(() => 'exists', () => 'absent')).to.equal('absent')
  })

  it('starts no daemon for a socket nobody answers on (a typo in --host or CLEANROOM_HOST), and says where the daemon is', async () => {
    const typo = join(home, 'typo.sock')
    for (const [args, env] of [
      [['sandbox', 'ls', '--host', `unix://${typo}`], daemon.env],
      [['sandbox', 'ls'], {...daemon.env, CLEANROOM_HOST: `unix://${typo}`}],
    ] as const) {
      const cli = await runCli(args, {env})
      expect(cli.exitCode).to.equal(1)
      expect(cli.stderr).to.include(`Error: no cleanroom daemon answers at ${typo}, and the daemon that owns ${daemon.stateDir} (pid ${daemon.pid}, version `)
      expect(cli.stderr).to.include('Try this: Talk to it: leave out --host and unset CLEANROOM_HOST')
      expect(await access(typo).then(() => 'exists', () => 'absent')).to.equal('absent')
    }
  })

  it('gives the lock to one of two takers at once; the other learns who has it', async () => {
    const stateDir = join(await dirs.make(), 'state')
    const owner = (n: number): DaemonOwner => ({pid: 1000 + n, socket: `/run/${n}.sock`, version: 'test', started_at: new Date().toISOString()})
    const results = await Promise.allSettled([StateLock.acquire(stateDir, owner(1)), StateLock.acquire(stateDir, owner(2))])
    const taken = results.filter((result): result is PromiseFulfilledResult<StateLock> => result.status === 'fulfilled')
    const refused = results.filter((result): result is PromiseRejectedResult => result.status === 'rejected')
    expect(taken).to.have.length(1)
    expect(refused).to.have.length(1)
    const error = refused[0]!.reason as CleanroomError
    expect(error.code).to.equal('daemon_already_running')
    expect(error.message).to.match(/\(pid 100[12], version test, listening on unix:\/\/\/run\/[12]\.sock\)/)
    await taken[0]!.value.release()
    await (await StateLock.acquire(stateDir, owner(3))).release()
  })
})
