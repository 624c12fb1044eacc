import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {DEFAULT_POLICY} from '../../../src/policy/compile.js'
import {testDaemonSuite} from '../../helpers/daemon.js'
import {git, sharedGuestBinProblems, VANDALIZE_GUEST_BIN} from '../boundary-fixtures.js'
import {SandboxUnderTest, until} from '../sandbox.js'

const SOCKET = '/run/cleanroom/exec/exec.sock'

/**
 * Connects to the exec server's socket from inside as a workload would, once per case,
 * and says what came back: whether the daemon closed the connection, and how many bytes it sent.
 */
const KNOCK = `const net = require('net')
const [socket, cases, silentCount] = [process.argv[2], JSON.parse(process.argv[3]), Number(process.argv[4] ?? 0)]
const knock = (send) => new Promise((resolve) => {
  const c = net.connect(socket)
  let bytes = 0
  const timer = setTimeout(() => { c.destroy(); resolve({closed: false, bytes}) }, 3000)
  c.on('data', (d) => (bytes += d.length))
  c.on('error', () => {})
  c.on('close', () => { clearTimeout(timer); resolve({closed: true, bytes}) })
  c.on('connect', () => c.write(send))
})
const silent = (count) => new Promise((resolve) => {
  const started = Date.now(), closedAt = []
  for (let i = 0; i < count; i++) {
    const c = net.connect(socket)
    c.on('error', () => {})
    c.on('close', () => { closedAt.push(Date.now() - started); if (closedAt.length === count) resolve(closedAt) })
  }
  setTimeout(() => resolve(closedAt), 9000)
})
;(async () => {
  const out = {}
  for (const [name, send] of Object.entries(cases)) out[name] = await knock(send)
  if (silentCount > 0) out.silent = await silent(silentCount)
  console.log(JSON.stringify(out))
})()
`

/**
 * The exec server of a gVisor sandbox (guest-serve.c, exec-server.ts): the workload is its
 * user and can reach its socket, so everything it may try there is tried.
 */
export function execServerAttacks(): void {
  describe('the exec server (gvisor)', () => {
    const suite = testDaemonSuite('cleanroom-exec-server-')
    let sandbox: SandboxUnderTest

    before(async function () {
      this.timeout(60_000)
      const repo = join(suite.dir, 'repo')
      await git(suite.dir, 'init', '-q', repo)
      await writeFile(join(repo, 'knock.js'), KNOCK)
      const created = await suite.test.client.createSandbox({backend: 'gvisor', policy: DEFAULT_POLICY, workspace_source: repo, allow_all: false})
      sandbox = new SandboxUnderTest(() => suite.test.client, created.sandbox_id)
    })

    /** The exec server's pid as a command it runs sees it (its parent), with what /proc shows the workload of it. */
    async function parentSeen(): Promise<{ppid: string; comm: string; status: string; reached: string}> {
      // What of the server the workload could open: its memory, its connections (fds above 2; 0-2 are /dev/null).
      const reach = 'for f in /proc/$PPID/mem /proc/$PPID/fd/*; do case "$f" in */fd/[012]) continue;; esac; (exec 9<"$f") 2>/dev/null && echo "opened $f"; done; true'
      const ran = await sandbox.sh(`echo $PPID; cat /proc/$PPID/comm; grep -E "^(Uid|Gid|CapEff|CapPrm|CapBnd|Seccomp):" /proc/$PPID/status | tr -s "\\t" " "; echo --; ${reach}`)
      expect(ran.exit_code, ran.stderr).to.equal(0)
      const [head = '', reached = ''] = ran.stdout.split('--\n')
      const lines = head.trim().split('\n')
      return {ppid: lines[0]!, comm: lines[1]!, status: lines.slice(2).join('\n'), reached}
    }

    it("runs commands as its children: the workload's user, no capabilities, filtered, its memory and connections closed to the workload", async () => {
      const [first, second] = [await parentSeen(), await parentSeen()]
      expect(first.ppid, 'one server runs both commands').to.equal(second.ppid)
      expect(first.ppid).not.to.equal('1')
      expect(first.comm).to.equal('cleanroom-nsini')
      expect(first.status).to.match(/^Uid: 1000 1000 1000 1000$/m).and.match(/^Gid: 1000 1000 1000 1000$/m).and.match(/^Seccomp: 2$/m)
      for (const set of ['CapEff', 'CapPrm', 'CapBnd']) expect(first.status).to.match(new RegExp(`^${set}: 0000000000000000$`, 'm'))
      expect(first.reached, 'what the workload opened of the server (it is not dumpable)').to.equal('')
    })

    it('closes every connection of the workload: no key, no token, no line, too many at once', async () => {
      const cases = {
        'a made-up key': `main ${'0'.repeat(64)}\n`,
        'a made-up token': `${randomBytes(32).toString('hex')} out\n`,
        'a token of another length': `${'a'.repeat(63)} ctl\n`,
        'no newline in 200 bytes': 'x'.repeat(200),
        'an HTTP request': 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
        'three words': 'main a b\n',
      }
      const ran = await sandbox.sh(`node /workspace/knock.js ${SOCKET} '${JSON.stringify(cases)}' 40`)
      expect(ran.exit_code, ran.stderr).to.equal(0)
      const seen = JSON.parse(ran.stdout) as Record<string, unknown>
      for (const name of Object.keys(cases)) expect(seen[name], name).to.deep.equal({closed: true, bytes: 0})
      const silent = seen.silent as number[]
      expect(silent, 'silent connections closed').to.have.length(40)
      // Past 32 waiting to name themselves, a connection is closed unread; the others after 5 s without a line.
      expect(silent.filter((ms) => ms < 2000).length, 'closed at once').to.be.at.least(8)
      // Commands still run through the server.
      expect((await sandbox.sh('echo still')).stdout).to.equal('still\n')
    })

    it('cannot change the copy of nsinit that every gVisor sandbox binds (its init, exec server and forwarders run it)', async () => {
      const ran = await sandbox.sh(`${VANDALIZE_GUEST_BIN}; ls -la /run/cleanroom/bin`)
      expect(ran.stdout, ran.stderr).to.contain('cleanroom-nsinit')
      expect(await sharedGuestBinProblems()).to.deep.equal([])
      expect((await sandbox.sh('echo still')).stdout, 'commands still run').to.equal('still\n')
    })

    it("runs later commands all the same when the workload kills the server, and never lets another take the server's place", async () => {
      const {ppid} = await parentSeen()
      // The killing command is the server's child too: its own end may go untold (an error), never anything else.
      await sandbox.sh(`kill -9 ${ppid}`).then(
        (ran) => expect(ran.exit_code, ran.stderr).to.equal(0),
        (error: Error) => expect(error.message).to.include('without its status'),
      )
      await until(async () => (await sandbox.sh(`test -d /proc/${ppid}`)).exit_code !== 0, 5000, 'the server to be gone')
      const after = await sandbox.sh('echo $PPID; echo ran')
      expect(after.exit_code, after.stderr).to.equal(0)
      expect(after.stdout.split('\n')[1]).to.equal('ran')
      expect(after.stdout.split('\n')[0], 'a new parent: runsc exec of nsinit run').not.to.equal(ppid)
      const cases = {'main, the server gone': `main ${'0'.repeat(64)}\n`}
      const ran = await sandbox.sh(`node /workspace/knock.js ${SOCKET} '${JSON.stringify(cases)}'`)
      expect((JSON.parse(ran.stdout) as Record<string, unknown>)['main, the server gone']).to.deep.equal({closed: true, bytes: 0})
    })
  })
}
