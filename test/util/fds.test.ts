import {expect} from 'chai'
import {execa} from 'execa'
import {fileURLToPath} from 'node:url'

const FDS = fileURLToPath(new URL('../../src/util/fds.ts', import.meta.url))

describe('closing inherited fds', () => {
  it('leaves a child process nothing the parent inherited, and the parent its own fds', async () => {
    const script = `
      import {closeInheritedFds} from ${JSON.stringify(FDS)}
      import {execFileSync} from 'node:child_process'
      import {openSync, readlinkSync} from 'node:fs'
      const own = openSync('/etc/hostname', 'r')
      const closed = closeInheritedFds()
      const child = execFileSync('sh', ['-c', 'ls /proc/$$/fd'], {stdio: ['ignore', 'pipe', 'ignore']}).toString().trim().split('\\n')
      console.log(JSON.stringify({closed, child, own: readlinkSync('/proc/self/fd/' + own)}))`
    const {stdout} = await execa('bash', ['-c', `exec 9</etc 20</etc 200</usr; exec "${process.execPath}" --import tsx --input-type=module -e "$0"`, script], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
    })
    const seen = JSON.parse(stdout) as {closed: number[]; child: string[]; own: string}
    expect(seen.closed).to.include.members([20, 200])
    expect(seen.child).to.deep.equal(['0', '1', '2'])
    expect(seen.own).to.equal('/etc/hostname')
  })
})
