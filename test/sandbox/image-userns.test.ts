import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {chmod, copyFile, mkdir, readdir, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {tempDirs} from '../helpers/tmp.js'

const exec = promisify(execFile)
const NON_ROOT_UID = 1234

describe('an image sandbox of a non-root daemon (user namespace mode)', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-image-userns-')
  after(() => dirs.cleanup())

  it("runs on the image's root filesystem, root inside only, and never writes it", async () => {
    const dir = await dirs.make()
    const rootfs = join(dir, 'rootfs')
    await mkdir(join(rootfs, 'bin'), {recursive: true})
    await mkdir(join(rootfs, 'etc'))
    await copyFile('/bin/busybox', join(rootfs, 'bin/busybox'))
    await symlink('busybox', join(rootfs, 'bin/sh'))
    await writeFile(join(rootfs, 'etc/os-release'), 'NAME=userns-image\n')
    const repo = join(dir, 'repo')
    await mkdir(repo)
    await writeFile(join(repo, 'a.txt'), 'hello\n')
    const sandboxes = join(dir, 'sandboxes')
    await mkdir(sandboxes)
    await exec('chown', ['-R', `${NON_ROOT_UID}:${NON_ROOT_UID}`, dir])
    await chmod(dir, 0o700)

    const script = new URL('nonroot-image-sandbox.ts', import.meta.url).pathname
    const {stdout} = await exec(
      'setpriv',
      [`--reuid=${NON_ROOT_UID}`, `--regid=${NON_ROOT_UID}`, '--clear-groups', process.execPath, '--import', 'tsx', script, repo, sandboxes, rootfs],
      {cwd: new URL('../..', import.meta.url).pathname, env: {PATH: process.env.PATH, HOME: '/nonexistent', TMPDIR: dir}},
    )
    const facts = JSON.parse(stdout) as {runtime: {userns_mode: boolean; state_dir: string}; seen: string; aliveAfter: boolean}
    expect(facts.runtime.userns_mode).to.equal(true)
    expect(facts.seen).to.match(/^NAME=userns-image\n0\nyes\nhello\nx\nCapEff:\s+0{16}\nNoNewPrivs:\s+1\n$/)
    expect(facts.aliveAfter).to.equal(false)
    expect((await readdir(join(rootfs, 'bin'))).sort()).to.deep.equal(['busybox', 'sh'])
    await exec('setpriv', [`--reuid=${NON_ROOT_UID}`, `--regid=${NON_ROOT_UID}`, '--clear-groups', 'rm', '-r', facts.runtime.state_dir])
  })
})
