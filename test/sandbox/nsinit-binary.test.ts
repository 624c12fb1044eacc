import {expect} from 'chai'
import {chmod, mkdir, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {builtHerePath, findNsinit, isStaticallyLinked, prebuiltPath} from '../../src/sandbox/backends/linux-ns/nsinit-binary.js'
import {PROJECT_ROOT} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

describe('which cleanroom-nsinit runs', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  async function executable(path: string, mode = 0o755): Promise<string> {
    await mkdir(dirname(path), {recursive: true})
    await writeFile(path, '#!/bin/sh\n')
    await chmod(path, mode)
    return path
  }

  /** A package root holding the prebuilt helpers the published package has. */
  async function packageRoot(): Promise<string> {
    const root = await dirs.make()
    await executable(prebuiltPath('linux-x64', root))
    await executable(prebuiltPath('linux-arm64', root))
    return root
  }

  it('picks the prebuilt helper of the platform it runs on', async () => {
    const root = await packageRoot()
    for (const platform of ['linux-x64', 'linux-arm64']) {
      expect(await findNsinit({root, platform, env: {}})).to.deep.equal({ok: true, binary: {path: prebuiltPath(platform, root), origin: 'prebuilt', description: `prebuilt for ${platform}`}})
    }
  })

  it('prefers a helper built on this machine, and CLEANROOM_NSINIT over both', async () => {
    const root = await packageRoot()
    const builtHere = await executable(builtHerePath(root))
    expect(await findNsinit({root, platform: 'linux-x64', env: {}})).to.deep.include({ok: true, binary: {path: builtHere, origin: 'built here', description: 'built on this machine (npm run build:nsinit)'}})
    const elsewhere = await executable(join(await dirs.make(), 'my-nsinit'))
    expect(await findNsinit({root, platform: 'linux-x64', env: {CLEANROOM_NSINIT: elsewhere}})).to.deep.include({ok: true, binary: {path: elsewhere, origin: 'environment', description: 'from CLEANROOM_NSINIT'}})
  })

  it('says how to build one on a platform without a prebuilt helper', async () => {
    const root = await packageRoot()
    expect(await findNsinit({root, platform: 'linux-riscv64', env: {}})).to.deep.equal({
      ok: false,
      problem: 'the sandbox launch helper cleanroom-nsinit is missing: the package has no prebuilt one for linux-riscv64 (it has linux-arm64, linux-x64) and none was built on this machine',
      fix: `cd ${root} && npm run build:nsinit (needs a C compiler: apt-get install -y gcc libc6-dev), or set CLEANROOM_NSINIT to a cleanroom-nsinit built elsewhere`,
    })
  })

  it('does not take a prebuilt helper that cannot be executed, or a folder, for one', async () => {
    const root = await dirs.make()
    await executable(prebuiltPath('linux-x64', root), 0o644)
    await mkdir(prebuiltPath('linux-arm64', root), {recursive: true})
    for (const platform of ['linux-x64', 'linux-arm64']) {
      expect(await findNsinit({root, platform, env: {}})).to.deep.include({ok: false, problem: `the sandbox launch helper cleanroom-nsinit is missing: the package has no prebuilt one for ${platform} (it has none) and none was built on this machine`})
    }
  })

  it('refuses a CLEANROOM_NSINIT that is relative or not executable, rather than running another helper', async () => {
    const root = await packageRoot()
    expect(await findNsinit({root, platform: 'linux-x64', env: {CLEANROOM_NSINIT: 'bin/nsinit'}})).to.deep.include({ok: false, problem: 'CLEANROOM_NSINIT (bin/nsinit) is not an absolute path'})
    const notExecutable = await executable(join(await dirs.make(), 'nsinit'), 0o644)
    expect(await findNsinit({root, platform: 'linux-x64', env: {CLEANROOM_NSINIT: notExecutable}})).to.deep.include({
      ok: false,
      problem: `CLEANROOM_NSINIT names ${notExecutable}, which is not an executable file`,
    })
  })

  it('tells a static helper (which runs inside any image) from a dynamically linked program', async () => {
    expect(await isStaticallyLinked(prebuiltPath(`${process.platform}-${process.arch}`, PROJECT_ROOT))).to.equal(true)
    expect(await isStaticallyLinked('/bin/busybox')).to.equal(true)
    expect(await isStaticallyLinked(process.execPath)).to.equal(false)
    expect(await isStaticallyLinked(await executable(join(await dirs.make(), 'script')))).to.equal(false)
  })
})
