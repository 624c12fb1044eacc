import {expect} from 'chai'
import {execa} from 'execa'

import {findNsinit} from '../../src/sandbox/backends/linux-ns/nsinit-binary.js'
import {buildSyscallProbe, FILTERED} from '../conformance/boundary-fixtures.js'
import {tempDirs} from '../helpers/tmp.js'

describe('the seccomp filter of sandboxed processes (nsinit seccomp)', () => {
  const dirs = tempDirs('cleanroom-seccomp-')
  let probe = ''
  let nsinit = ''

  before(async () => {
    const found = await findNsinit()
    if (!found.ok) throw new Error(`${found.problem} (fix: ${found.fix})`)
    nsinit = found.binary.path
    probe = await buildSyscallProbe(await dirs.make())
  })

  after(() => dirs.cleanup())

  it('refuses, makes unavailable or kills exactly what it should, with no namespace around it', async () => {
    const {stdout} = await execa(nsinit, ['seccomp', '--', probe])
    expect(JSON.parse(stdout)).to.deep.equal(FILTERED)
  })

  it('control: without the filter the same calls reach the kernel (as nobody: every call is harmless)', async () => {
    const {stdout} = await execa('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', probe])
    const unfiltered = JSON.parse(stdout) as Record<string, string>
    expect(unfiltered).to.deep.include({unshare_user: 'ok', clone_user: 'ok', clone3: 'EINVAL', io_uring_setup: 'EFAULT', ioctl_tiocsti: 'EBADF', setns: 'EBADF'})
  })

  it('leaves the program no fd above 2, and runs it with no_new_privs', async () => {
    const {stdout} = await execa('bash', ['-c', `exec 7</dev/null; exec ${nsinit} seccomp -- sh -c 'ls /proc/self/fd; grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status'`])
    expect(stdout.split('\n')).to.deep.equal(['0', '1', '2', '3', 'NoNewPrivs:\t1', 'Seccomp:\t2'])
  })
})
