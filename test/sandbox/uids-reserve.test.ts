import {expect} from 'chai'
import {type ChildProcess, spawn} from 'node:child_process'
import {access, mkdir, readdir, readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {processFacts} from '../../src/sandbox/backends/linux-ns/runtime.js'
import {HostUidReserve} from '../../src/sandbox/backends/linux-ns/uid-reserve.js'
import {HOST_UID_RANGE, reclaimStaleUids, RESERVED, type UidClaim} from '../../src/sandbox/backends/linux-ns/uids.js'
import {newSandboxId} from '../../src/sandbox/ids.js'
import {tempDirs} from '../helpers/tmp.js'
import {waitFor} from './helpers.js'

/** Each test's own slice of the range, near its end (uids.test.ts uses the last three). */
const rangeOf = (slot: number) => ({first: HOST_UID_RANGE.last - 10 * slot - 12, last: HOST_UID_RANGE.last - 10 * slot - 3})

describe('host uids reserved ahead of the next create', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-uid-reserve-')
  const children: ChildProcess[] = []
  const reserves: HostUidReserve[] = []
  let registry: string
  let base: string

  before(() => {
    expect(process.geteuid?.(), 'only a root daemon claims host uids: run these tests as root').to.equal(0)
  })

  beforeEach(async () => {
    base = await dirs.make()
    registry = join(base, 'uids')
    await mkdir(registry, {mode: 0o700})
  })

  afterEach(async () => {
    for (const reserve of reserves.splice(0)) await reserve.close()
    for (const child of children.splice(0)) {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await new Promise((resolve) => child.once('exit', resolve))
      }
    }
    await dirs.cleanup()
  })

  const claims = async (): Promise<UidClaim[]> => {
    const names = await readdir(registry)
    return Promise.all(names.map(async (name) => JSON.parse(await readFile(join(registry, name), 'utf8')) as UidClaim))
  }
  const reservedClaim = async (): Promise<UidClaim | undefined> => (await claims()).find((claim) => claim.sandbox_id === RESERVED)
  const newStateDir = async (): Promise<string> => {
    const dir = join(base, newSandboxId())
    await mkdir(dir, {mode: 0o700})
    return dir
  }

  it('a create takes the reserved uid: the claim becomes its, in one rename; the next is reserved; close gives the reservation back', async () => {
    const range = rangeOf(1)
    const reserve = new HostUidReserve({registry, range})
    reserves.push(reserve)
    reserve.refill()
    await waitFor('a reservation', async () => (await reservedClaim()) !== undefined)
    const reserved = (await reservedClaim())!
    expect(reserved).to.deep.include({state_dir: RESERVED, daemon_pid: process.pid})
    expect(reserved.uid).to.be.within(range.first, range.last)

    const id = newSandboxId()
    const stateDir = await newStateDir()
    expect(await reserve.claim(id, stateDir)).to.equal(reserved.uid)
    expect(await claims()).to.have.lengthOf(1)
    expect((await claims())[0]).to.deep.include({uid: reserved.uid, sandbox_id: id, state_dir: stateDir, daemon_pid: process.pid})
    expect(await readdir(registry), 'nothing but claims in the registry').to.deep.equal([String(reserved.uid)])
    const dirStats = await stat(stateDir)
    expect([dirStats.uid, dirStats.gid, dirStats.mode & 0o7777]).to.deep.equal([0, reserved.uid, 0o710])

    reserve.refill()
    await waitFor('the next reservation', async () => (await reservedClaim()) !== undefined)
    const next = (await reservedClaim())!
    expect(next.uid).to.not.equal(reserved.uid)

    await reserve.close()
    expect((await claims()).map((claim) => claim.sandbox_id), "only the sandbox's claim is left").to.deep.equal([id])
    // Closed: creates still get a uid, claimed as without a reservation, and none is reserved after.
    const after = await reserve.claim(newSandboxId(), await newStateDir())
    expect(after).to.not.equal(reserved.uid)
    reserve.refill()
    await new Promise((resolve) => setTimeout(resolve, 300))
    expect(await reservedClaim()).to.equal(undefined)
  })

  it('a reservation that a process comes to run as is given back and replaced, and never handed to a create', async () => {
    const reserve = new HostUidReserve({registry, range: rangeOf(2), reverifyMs: 100})
    reserves.push(reserve)
    reserve.refill()
    await waitFor('a reservation', async () => (await reservedClaim()) !== undefined)
    const taken = (await reservedClaim())!.uid
    const sleeper = spawn('sleep', ['600'], {uid: taken, gid: taken, stdio: 'ignore'})
    children.push(sleeper)
    await waitFor('the process of the reserved uid', async () => (await processFacts(sleeper.pid!))?.uid === taken)
    await waitFor('another reservation', async () => {
      const claim = await reservedClaim()
      return claim !== undefined && claim.uid !== taken
    })
    expect(await access(join(registry, String(taken))).then(() => true, () => false), 'the busy uid is not claimed any more').to.equal(false)
    expect(await reserve.claim(newSandboxId(), await newStateDir())).to.not.equal(taken)
  })

  it("a reservation of a daemon that is gone is swept like any stale claim", async () => {
    const child = spawn('sleep', ['0.2'], {stdio: 'ignore'})
    const facts = await processFacts(child.pid!)
    await new Promise((resolve) => child.once('exit', resolve))
    const uid = rangeOf(3).first
    const claim: UidClaim = {uid, sandbox_id: RESERVED, state_dir: RESERVED, daemon_pid: child.pid!, daemon_start_time: facts!.startTime, claimed_at: new Date().toISOString()}
    await writeFile(join(registry, String(uid)), JSON.stringify(claim), {mode: 0o600})
    expect(await reclaimStaleUids(registry)).to.deep.equal([{uid, claim}])
    expect(await readdir(registry)).to.deep.equal([])
  })
})
