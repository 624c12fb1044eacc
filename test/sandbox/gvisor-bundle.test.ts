import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {once} from 'node:events'
import {chmod, chown, lstat, mkdir, readdir, readFile, rm, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {writeBundle} from '../../src/sandbox/backends/gvisor/bundle.js'
import {GUEST_NSINIT, guestBinPath, shareGuestBin, SharedGuestBin, sweepGuestBins} from '../../src/sandbox/backends/gvisor/guest-bin.js'
import {imageRootfs, sandboxRootfs} from '../../src/sandbox/layout.js'
import {tempDirs} from '../helpers/tmp.js'

const HOST_UID = 1_234_567
const FILES_UID = HOST_UID + 65_536

interface Spec {
  root: {path: string; readonly: boolean}
  mounts: Array<{destination: string; source?: string; options?: string[]}>
  linux: {uidMappings: unknown[]; gidMappings: unknown[]}
}

describe("the gvisor sandbox's OCI bundle", () => {
  const dirs = tempDirs('cleanroom-gvisor-bundle-')
  after(() => dirs.cleanup())

  async function bundle(options: {image: boolean; workload: {uid: number; gid: number}; filesUid: number; filesGid: number}): Promise<{spec: Spec; state: string}> {
    const state = await dirs.make()
    const rootfs = options.image ? imageRootfs('/mnt') : await sandboxRootfs('/mnt')
    await writeBundle(state, {stateView: '/mnt', guestBin: '/run/x/bin-0123', egressDir: '/run/x/egress', rootfs, hostUid: HOST_UID, ...options, imageRoot: options.image})
    return {spec: JSON.parse(await readFile(join(state, 'bundle/config.json'), 'utf8')) as Spec, state}
  }

  it("on the host's root filesystem: a read-only root of mount points; root to U, the sandbox user to the files' uid", async () => {
    const {spec, state} = await bundle({image: false, workload: {uid: 1000, gid: 1000}, filesUid: FILES_UID, filesGid: FILES_UID})
    expect(spec.root).to.deep.equal({path: '/mnt/rootfs', readonly: true})
    expect(await readdir(join(state, 'rootfs'))).to.include.members(['usr', 'etc', 'workspace', 'run'])
    const ids = [{containerID: 0, hostID: HOST_UID, size: 1}, {containerID: 1000, hostID: FILES_UID, size: 1}]
    expect(spec.linux.uidMappings).to.deep.equal(ids)
    expect(spec.linux.gidMappings).to.deep.equal(ids)
    expect(spec.mounts.find((mount) => mount.destination === '/run/cleanroom/bin')).to.deep.equal({destination: '/run/cleanroom/bin', type: 'bind', source: '/run/x/bin-0123', options: ['rbind', 'ro']})
    expect(await readdir(state), 'no copy of nsinit per sandbox').to.have.members(['bundle', 'rootfs'])
  })

  it("on an image: its overlay is the writable root, nothing of the host's /usr, and its User's ids map to the files' owner", async () => {
    const {spec, state} = await bundle({image: true, workload: {uid: 4321, gid: 0}, filesUid: FILES_UID, filesGid: HOST_UID})
    expect(spec.root).to.deep.equal({path: '/mnt/rootfs', readonly: false})
    // The overlay is mounted there by nsinit: the bundle makes no root dir of its own.
    expect(await readdir(state)).not.to.include('rootfs')
    expect(spec.mounts.map((mount) => mount.destination)).to.include.members(['/etc', '/workspace', '/tmp', '/home/cleanroom', '/run/cleanroom/bin', '/run/cleanroom/egress'])
    for (const hostOnly of ['/', '/usr']) expect(spec.mounts.map((mount) => mount.destination)).not.to.include(hostOnly)
    expect(spec.linux.uidMappings).to.deep.equal([{containerID: 0, hostID: HOST_UID, size: 1}, {containerID: 4321, hostID: FILES_UID, size: 1}])
    expect(spec.linux.gidMappings).to.deep.equal([{containerID: 0, hostID: HOST_UID, size: 1}])
  })

  it("on an image whose User is root: the workload is the sandbox's root, one id mapped", async () => {
    const {spec} = await bundle({image: true, workload: {uid: 0, gid: 0}, filesUid: HOST_UID, filesGid: HOST_UID})
    expect(spec.linux.uidMappings).to.deep.equal([{containerID: 0, hostID: HOST_UID, size: 1}])
    expect(spec.linux.gidMappings).to.deep.equal([{containerID: 0, hostID: HOST_UID, size: 1}])
  })
})

describe('the copy of nsinit every gvisor sandbox binds', () => {
  const dirs = tempDirs('cleanroom-gvisor-bin-')
  after(() => dirs.cleanup())

  before(function () {
    if (process.getuid?.() !== 0) throw new Error('these tests need root: the shared copy is root-owned, as the gvisor backend (a root daemon) makes it')
  })

  it('is made once, whole, root-owned and read-only to others, named by its content; daemons that ask at once share one', async () => {
    const base = await dirs.make()
    const runRoot = join(base, 'run')
    const nsinit = join(base, 'nsinit')
    await writeFile(nsinit, 'version one', {mode: 0o700})
    const made = await Promise.all([1, 2, 3].map(() => shareGuestBin(nsinit, runRoot)))
    expect(new Set(made).size).to.equal(1)
    const dir = made[0]!
    expect(await readdir(runRoot), 'no half-made dir left').to.deep.equal([dir.split('/').at(-1)])
    expect(await readFile(join(dir, GUEST_NSINIT), 'utf8')).to.equal('version one')
    for (const path of [dir, join(dir, GUEST_NSINIT)]) {
      const stats = await lstat(path)
      expect([stats.uid, stats.mode & 0o777], path).to.deep.equal([0, 0o755])
    }
    await writeFile(nsinit, 'version two')
    const next = await shareGuestBin(nsinit, runRoot)
    expect(next).to.not.equal(dir)
    expect(await readFile(join(dir, GUEST_NSINIT), 'utf8'), 'the copy sandboxes already use is never changed').to.equal('version one')
  })

  it('refuses a dir by its name that someone else could have changed', async () => {
    const base = await dirs.make()
    const runRoot = join(base, 'run')
    const nsinit = join(base, 'nsinit')
    await writeFile(nsinit, 'program')
    const dir = await shareGuestBin(nsinit, runRoot)
    await chown(join(dir, GUEST_NSINIT), 1000, 1000)
    const error = await shareGuestBin(nsinit, runRoot).catch((error_: unknown) => error_)
    expect(error).to.have.property('code', 'backend_failed')
    expect((error as Error).message).to.include(runRoot)
    await chown(join(dir, GUEST_NSINIT), 0, 0)
    await chmod(dir, 0o777)
    expect(await shareGuestBin(nsinit, runRoot).catch((error_: unknown) => error_)).to.have.property('code', 'backend_failed')
  })

  /** A copy of nsinit as `version` makes it under `runRoot`, dated `minutesAgo`. */
  async function copyOf(runRoot: string, base: string, version: string, minutesAgo: number): Promise<string> {
    const nsinit = join(base, `nsinit-${version}`)
    await writeFile(nsinit, version)
    const dir = await shareGuestBin(nsinit, runRoot)
    const then = new Date(Date.now() - minutesAgo * 60_000)
    await utimes(dir, then, then)
    return dir
  }

  it("is swept once no sandbox binds it: other builds' copies and half-made ones go, this daemon's, young ones, bound ones and other names stay", async () => {
    const base = await dirs.make()
    const runRoot = join(base, 'run')
    const own = await copyOf(runRoot, base, 'this build', 60)
    const older = await copyOf(runRoot, base, 'an older build', 60)
    const young = await copyOf(runRoot, base, 'a build whose daemon just made it', 1)
    const bound = await copyOf(runRoot, base, 'a build whose sandbox still runs', 60)
    const halfMade = join(runRoot, '.bin-Ab12Cd')
    const other = join(runRoot, 'cr_01JZZZZZZZZZZZZZZZZZZZZZZZ')
    for (const dir of [halfMade, other]) await mkdir(dir)
    const past = new Date(Date.now() - 3_600_000)
    for (const dir of [halfMade, other]) await utimes(dir, past, past)

    // A sandbox's gofer binds the copy in a mount namespace of its own: so does this process.
    const target = join(base, 'target')
    await mkdir(target)
    const holder = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount --bind ${join(bound, '.')} ${target} && echo bound && exec sleep 120`], {stdio: ['ignore', 'pipe', 'inherit']})
    try {
      const [said] = (await once(holder.stdout!, 'data')) as [Buffer]
      expect(said.toString()).to.equal('bound\n')
      expect(await sweepGuestBins(runRoot, own, 10 * 60_000)).to.have.members([older, halfMade])
      expect((await readdir(runRoot)).sort()).to.deep.equal([own, young, bound, other].map((dir) => dir.split('/').at(-1)).sort())
    } finally {
      holder.kill('SIGKILL')
      if (holder.exitCode === null && holder.signalCode === null) await once(holder, 'exit')
    }
    // Its sandbox gone, it goes too.
    expect(await sweepGuestBins(runRoot, own, 10 * 60_000)).to.deep.equal([bound])
  })

  it("is made again for this daemon's next create when another daemon swept it", async () => {
    const base = await dirs.make()
    const runRoot = join(base, 'run')
    const nsinit = join(base, 'nsinit')
    await writeFile(nsinit, 'program')
    const shared = new SharedGuestBin(async () => nsinit, runRoot)
    const dir = await shared.dir()
    expect(dir).to.equal(await guestBinPath(nsinit, runRoot))
    await rm(dir, {recursive: true})
    expect(await shared.dir()).to.equal(dir)
    expect(await readFile(join(dir, GUEST_NSINIT), 'utf8')).to.equal('program')
  })
})
