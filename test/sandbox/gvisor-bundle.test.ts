import {expect} from 'chai'
import {chmod, chown, lstat, readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {writeBundle} from '../../src/sandbox/backends/gvisor/bundle.js'
import {GUEST_NSINIT, shareGuestBin} from '../../src/sandbox/backends/gvisor/guest-bin.js'
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
})
