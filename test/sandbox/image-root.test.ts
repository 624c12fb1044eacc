import {expect} from 'chai'
import {mkdir, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import type {ProvisionImage} from '../../src/sandbox/backend.js'
import {GUEST} from '../../src/sandbox/backends/gvisor/bundle.js'
import {planImageSandbox} from '../../src/sandbox/image-root.js'
import {tempDirs} from '../helpers/tmp.js'

const GVISOR_TARGETS = [GUEST.bin, GUEST.egress]

describe("an image's mount points", () => {
  const dirs = tempDirs('cleanroom-image-root-')
  after(() => dirs.cleanup())

  async function imageWith(make: (rootfs: string) => Promise<void>): Promise<ProvisionImage> {
    const rootfs = join(await dirs.make(), 'rootfs')
    await mkdir(join(rootfs, 'bin'), {recursive: true})
    await make(rootfs)
    return {ref: `local/test@sha256:${'a'.repeat(64)}`, id: `sha256:${'b'.repeat(64)}`, rootfs, config: {}}
  }

  async function refusal(image: ProvisionImage, targets: readonly string[]): Promise<CleanroomError> {
    const error = await planImageSandbox(image, targets).then(() => undefined, (caught: unknown) => caught)
    expect(error).to.be.instanceOf(CleanroomError)
    return error as CleanroomError
  }

  it('takes an image where they are absent', async () => {
    const plan = await planImageSandbox(await imageWith(async () => undefined), GVISOR_TARGETS)
    expect(plan.user).to.deep.equal({uid: 1000, gid: 1000, name: 'cleanroom'})
  })

  it('refuses a symlink on the way to one, naming it', async () => {
    const linkedHome = await imageWith((rootfs) => symlink('/var/home', join(rootfs, 'home')))
    expect(await refusal(linkedHome, [])).to.include({code: 'image_unsupported'})
    expect((await refusal(linkedHome, [])).message).to.contain('its /home is a symlink, and cleanroom mounts the sandbox\'s own /home/cleanroom there')
  })

  it('refuses a symlink or a file at /run where gvisor mounts its helper and egress sockets, only for the targets it is given', async () => {
    const linkedRun = await imageWith((rootfs) => symlink('/tmp', join(rootfs, 'run')))
    const error = await refusal(linkedRun, GVISOR_TARGETS)
    expect(error.code).to.equal('image_unsupported')
    expect(error.message).to.contain('its /run is a symlink, and cleanroom mounts the sandbox\'s own /run/cleanroom/bin there')
    expect((await planImageSandbox(linkedRun)).rootfs).to.equal(linkedRun.rootfs)
    const fileAtRun = await imageWith(async (rootfs) => {
      await mkdir(join(rootfs, 'run'))
      await writeFile(join(rootfs, 'run/cleanroom'), 'not a directory')
    })
    expect((await refusal(fileAtRun, GVISOR_TARGETS)).message).to.contain('its /run/cleanroom is not a directory')
  })
})
