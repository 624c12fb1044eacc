import {expect} from 'chai'
import {execa, type ResultPromise} from 'execa'
import {mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {PublicSandbox} from '../../src/client/client.js'
import {runInSandbox} from '../../src/client/exec.js'
import {probeStateLock} from '../../src/daemon/lock.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {runCli, RUN_SCRIPT} from '../helpers/cli.js'
import {daemonHomeSuite, type DaemonProcess, eventually, scaled, spawnDaemon} from '../helpers/daemon-process.js'
import {captureTerminal} from '../helpers/terminal.js'

/** Binds 127.0.0.1:3128 in the sandbox as soon as it is free: what a hostile sandbox does while its daemon is away. */
const SQUATTER = `require('fs').writeFileSync('/tmp/squatter.pid', String(process.pid)); const net = require('net');
(function take() { const s = net.createServer(); s.once('error', () => setTimeout(take, 20)); s.listen(3128, '127.0.0.1') })()`

describe('a daemon killed with SIGKILL', function () {
  this.timeout(240_000)
  const suite = daemonHomeSuite('cleanroom-crash-')

  it('loses no sandbox: kept ones (some mid-exec, some with a console) are all ready after 8 CLIs start at once', async () => {
    const count = scaled(20, 50)
    const daemon = await spawnDaemon(suite.home)
    const repo = join(suite.home, 'repo')
    await mkdir(repo)
    const ids: string[] = []
    for (let start = 0; start < count; start += 5) {
      const batch = await Promise.all(Array.from({length: Math.min(5, count - start)}, () => daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})))
      ids.push(...batch.map((sandbox) => sandbox.sandbox_id))
    }
    await Promise.all(ids.map((id) => daemon.client.run(id, {argv: ['sh', '-c', `echo ${id} > /workspace/mark && echo home > ~/h`], env: {}})))

    // Mid-exec: CLIs streaming a command; consoles: TTY executions of this process.
    const execs = ids.slice(0, 3).map((id) => startCli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'echo started; exec sleep 60'], daemon.env, repo))
    await Promise.all(execs.map((exec) => outputSeen(exec, 'started')))
    const consoles = ids.slice(3, 5).map((id) => {
      const terminal = captureTerminal()
      const outcome = runInSandbox(daemon.client, id, {argv: ['sh', '-c', 'echo console; exec sleep 60'], env: {TERM: 'xterm'}, tty: true}, terminal).catch((error: unknown) => error)
      return {terminal, outcome}
    })
    await eventually('the consoles to run', () => consoles.every(({terminal}) => terminal.output().toString().includes('console')))
    const squatted = ids[5]!
    await daemon.client.run(squatted, {argv: ['sh', '-c', `node -e "${SQUATTER}" </dev/null >/dev/null 2>&1 &`], env: {}})

    process.kill(daemon.pid, 'SIGKILL')
    await daemon.exited

    // While no daemon runs, a sandbox's connections out are refused by its own kernel: nothing listens on the proxy port.
    const refused = await execa('nsenter', ['-t', String(await initPid(daemon, ids[6]!)), '-n', 'curl', '-sS', '-m', '5', '-x', 'http://127.0.0.1:3128', 'http://example.com/'], {reject: false})
    expect(refused.exitCode, refused.stderr).to.equal(7)
    expect(refused.stderr).to.match(/Connection refused|Couldn't connect/)

    for (const exec of execs) {
      const result = await exec
      expect(result.exitCode).to.equal(1)
      expect(result.stderr).to.match(/^Error: the cleanroom daemon went away while the command was running in sandbox cr_\w+: its exit code is unknown$/m)
    }
    for (const {outcome} of consoles) expect(((await outcome) as CleanroomError).code).to.equal('exec_lost')

    const clis = await Promise.all(Array.from({length: 8}, () => runCli(['sandbox', 'ls', '--json'], {env: daemon.env, cwd: repo})))
    for (const cli of clis) expect(cli.exitCode, cli.stderr).to.equal(0)
    const listings = clis.map((cli) => (JSON.parse(cli.stdout) as PublicSandbox[]).map((sandbox) => `${sandbox.sandbox_id} ${sandbox.status}`))
    // Sandboxes created in the same millisecond list in either order.
    for (const listing of listings) expect(listing.sort()).to.deep.equal(ids.map((id) => `${id} ready`).sort())

    const lock = await probeStateLock(daemon.stateDir)
    const answering = await daemon.client.ping()
    expect(lock.held && lock.owner?.pid).to.equal(answering.pid)
    // The CLIs whose daemons lost the race were served by the winner; their daemons exit as soon as they find the lock taken.
    await eventually('one daemon to be left on this state dir', async () => (await serveProcesses(suite.home)).join() === String(answering.pid), 15_000)

    for (const id of ids) {
      expect((await daemon.client.run(id, {argv: ['sh', '-c', 'cat /workspace/mark ~/h'], env: {}})).stdout).to.equal(`${id}\nhome\n`)
    }

    // Its proxy port taken inside, the squatted sandbox stays ready, failing closed, until the port is free again.
    const stuck = await daemon.client.inspectSandbox(squatted)
    expect(stuck.status).to.equal('ready')
    expect(stuck.egress?.listening).to.equal(false)
    expect(stuck.egress?.listen_error).to.match(/could not listen on 127\.0\.0\.1:3128/)
    await daemon.client.run(squatted, {argv: ['sh', '-c', 'kill -9 $(cat /tmp/squatter.pid)'], env: {}})
    await eventually('the proxy to listen again', async () => (await daemon.client.inspectSandbox(squatted)).egress?.listening === true, 10_000)
  })
})

function startCli(args: string[], env: Record<string, string>, cwd: string): ResultPromise {
  return execa(process.execPath, [RUN_SCRIPT, ...args], {env: {NO_COLOR: '1', ...env}, cwd, reject: false, stdin: 'ignore'})
}

async function outputSeen(child: ResultPromise, text: string): Promise<void> {
  let seen = ''
  await new Promise<void>((resolve, reject) => {
    child.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString()
      if (seen.includes(text)) resolve()
    })
    void child.then((result) => reject(new Error(`the CLI exited before printing ${text}: ${String(result.stderr)}`)))
  })
}

async function initPid(daemon: DaemonProcess, id: string): Promise<number> {
  const record = JSON.parse(await readFile(join(daemon.stateDir, 'sandboxes', id, 'state.json'), 'utf8')) as {runtime: {init_pid: number}}
  return record.runtime.init_pid
}

/** Pids of `cleanroom serve` processes whose environment points at `home`'s state. */
async function serveProcesses(home: string): Promise<number[]> {
  const {readdir} = await import('node:fs/promises')
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = (await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')).split('\0')
    if (!cmdline.includes('serve') || !cmdline.includes(RUN_SCRIPT)) continue
    const environ = await readFile(`/proc/${entry}/environ`, 'utf8').catch(() => '')
    if (environ.split('\0').includes(`XDG_STATE_HOME=${home}/.local/state`)) found.push(Number(entry))
  }
  return found
}
