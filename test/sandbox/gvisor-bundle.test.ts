import {expect} from 'chai'
import {readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {writeBundle} from '../../src/sandbox/backends/gvisor/bundle.js'
import {imageRootfs, sandboxRootfs} from '../../src/sandbox/layout.js'
import {tempDirs} from '../helpers/tmp.js'

const HOST_UID = 1_234_567
const FILES_UID = HOST_UID + 65_536

interface Spec {
  root: {path: string; readonly: boolean}
  mounts: Array<{destination: string}>
  linux: {uidMappings: unknown[]; gidMappings: unknown[]}
}

describe("the gvisor sandbox's OCI bundle", () => {
  const dirs = tempDirs('cleanroom-gvisor-bundle-')
  after(() => dirs.cleanup())

  async function bundle(options: {image: boolean; workload: {uid: number; gid: number}; filesUid: number; filesGid: number}): Promise<{spec: Spec; state: string}> {
    const state = await dirs.make()
    const nsinit = join(state, 'nsinit-copy')
    await writeFile(nsinit, 'not a program')
    const rootfs = options.image ? imageRootfs('/mnt') : await sandboxRootfs('/mnt')
    await writeBundle(state, nsinit, {stateView: '/mnt', egressDir: '/run/x/egress', rootfs, hostUid: HOST_UID, ...options, imageRoot: options.image})
    return {spec: JSON.parse(await readFile(join(state, 'bundle/config.json'), 'utf8')) as Spec, state}
  }

  it("on the host's root filesystem: a read-only root of mount points; root to U, the sandbox user to the files' uid", async () => {
    const {spec, state} = await bundle({image: false, workload: {uid: 1000, gid: 1000}, filesUid: FILES_UID, filesGid: FILES_UID})
    expect(spec.root).to.deep.equal({path: '/mnt/rootfs', readonly: true})
    expect(await readdir(join(state, 'rootfs'))).to.include.members(['usr', 'etc', 'workspace', 'run'])
    const ids = [{containerID: 0, hostID: HOST_UID, size: 1}, {containerID: 1000, hostID: FILES_UID, size: 1}]
    expect(spec.linux.uidMappings).to.deep.equal(ids)
    expect(spec.linux.gidMappings).to.deep.equal(ids)
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
