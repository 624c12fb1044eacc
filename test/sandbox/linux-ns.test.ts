import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {chmod, copyFile, mkdir, readFile, readlink, realpath, rm, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {promisify} from 'node:util'

import {CleanroomError} from '../../src/errors/index.js'
import type {BackendRuntime} from '../../src/sandbox/backend.js'
import {LinuxNsBackend, type LinuxNsRuntime} from '../../src/sandbox/backends/linux-ns/index.js'
import {HOST_UID_RANGE} from '../../src/sandbox/backends/linux-ns/uids.js'
import {tempDirs} from '../helpers/tmp.js'
import {
  hostProcesses,
  mountLinesMentioning,
  newStateDir,
  POLICY,
  sh,
  treeDigest,
  waitFor,
} from './helpers.js'

const exec = promisify(execFile)
const TEMP_PREFIX = 'cleanroom-linux-ns-'
const NON_ROOT_UID = 1234

/** How linux-ns builds a sandbox; what a sandbox is, on every backend, is test/conformance/lifecycle.test.ts. */
describe('the linux-ns backend', function () {
  this.timeout(60_000)
  const backend = new LinuxNsBackend({bwrap_path: 'bwrap'})
  const dirs = tempDirs(TEMP_PREFIX)
  const live: BackendRuntime[] = []
  const everySandbox: LinuxNsRuntime[] = []
  const hostFiles: string[] = []
  let sandboxesDir: string

  before(async () => {
    const availability = await backend.availability()
    expect(availability.ok, `linux-ns cannot run here: ${availability.problem} (fix: ${availability.fix})`).to.equal(true)
    expect(process.getuid?.(), 'these tests drive the root-daemon path: run them as root').to.equal(0)
  })

  beforeEach(async () => {
    // mkdtemp makes the dir 0700: the sandbox's uid cannot traverse it, as with a root daemon's state under /root.
    sandboxesDir = join(await dirs.make(), 'sandboxes')
    await mkdir(sandboxesDir)
  })

  afterEach(async () => {
    const failures: unknown[] = []
    for (const runtime of live.splice(0)) await backend.terminate(runtime).catch((error: unknown) => failures.push(error))
    for (const file of hostFiles.splice(0)) await rm(file, {force: true})
    await dirs.cleanup()
    if (failures.length > 0) throw failures[0]
  })

  after(async () => {
    // The uid the backend reserves for a next create goes back (test/sandbox/uids-reserve.test.ts tests the giving back).
    await backend.release()
    const uids = new Set(everySandbox.map((sandbox) => sandbox.host_uid))
    const pids = new Set(everySandbox.flatMap((sandbox) => [sandbox.init_pid, sandbox.bwrap_pid]))
    const leftovers = (await hostProcesses()).filter((process) => uids.has(process.uid) || (process.comm === 'bwrap' && pids.has(process.pid)))
    expect(leftovers, 'processes of the test sandboxes').to.deep.equal([])
    expect(await mountLinesMentioning(TEMP_PREFIX), 'mounts of the test dirs').to.deep.equal([])
  })

  /** A repo owned by root with a few files, in a dir of its own. */
  async function makeRepo(files: Record<string, string> = {'a.txt': 'hello\n', 'sub/b.txt': 'deep\n'}): Promise<string> {
    const repo = join(await dirs.make(), 'repo')
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(repo, path, '..'), {recursive: true})
      await writeFile(join(repo, path), text, {mode: 0o644})
    }
    await mkdir(repo, {recursive: true})
    return repo
  }

  async function createSandbox(workspaceSource: string | null): Promise<LinuxNsRuntime & BackendRuntime> {
    const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
    const runtime = (await backend.provision({sandboxId, policy: POLICY, workspaceSource, stateDir})) as LinuxNsRuntime & BackendRuntime
    live.push(runtime)
    everySandbox.push(runtime)
    return runtime
  }

  describe('a sandbox', () => {
    let sandbox: LinuxNsRuntime & BackendRuntime
    let repo: string

    beforeEach(async () => {
      repo = await makeRepo()
      sandbox = await createSandbox(repo)
    })

    it("runs on the host as the sandbox's own uid, never root", async () => {
      expect(sandbox.host_uid).to.be.within(HOST_UID_RANGE.first, HOST_UID_RANGE.last)
      const sleeping = await backend.exec(sandbox, {argv: ['sleep', '31.4159'], env: {}, tty: false})
      // Found by this sandbox's pid namespace (its init's): a parallel run of this suite has a sleep of its own.
      const pidNamespace = async (pid: number) => readlink(`/proc/${pid}/ns/pid`).catch(() => undefined)
      const ours = await pidNamespace(sandbox.init_pid)
      expect(ours, 'the sandbox init\'s pid namespace').to.match(/^pid:\[\d+\]$/)
      let workload: {pid: number} | undefined
      await waitFor('the workload on the host', async () => {
        for (const process of await hostProcesses()) {
          if (process.cmdline.join(' ') === 'sleep 31.4159' && (await pidNamespace(process.pid)) === ours) workload = process
        }
        return workload !== undefined
      })
      const status = await readFile(`/proc/${workload!.pid}/status`, 'utf8')
      const uid = String(sandbox.host_uid)
      expect(status).to.match(new RegExp(`^Uid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
      expect(status).to.match(new RegExp(`^Gid:\\s+${uid}\\s+${uid}\\s+${uid}\\s+${uid}$`, 'm'))
      sleeping.signal('SIGTERM')
      expect(await sleeping.exited).to.deep.equal({exit_code: 143, signal: 'SIGTERM'})
    })
  })

  it('creates 10 sandboxes in parallel, each with a host uid of its own', async () => {
    const repo = await makeRepo()
    const sandboxes = await Promise.all(Array.from({length: 10}, () => createSandbox(repo)))
    expect(new Set(sandboxes.map((sandbox) => sandbox.host_uid)).size).to.equal(10)
    const outputs = await Promise.all(sandboxes.map((sandbox) => sh(backend, sandbox, 'id -u; cat a.txt')))
    expect(outputs).to.deep.equal(Array.from({length: 10}, () => '1000\nhello\n'))
  })

  it("fails to provision with backend_failed and the helper's message, leaving nothing behind", async () => {
    // /proc/sys cannot be idmapped: nsinit fails before bwrap starts.
    const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
    const failure = await backend.provision({sandboxId, policy: POLICY, workspaceSource: '/proc/sys', stateDir}).catch((error: unknown) => error)
    expect(failure).to.be.instanceOf(CleanroomError).and.have.property('code', 'backend_failed')
    expect((failure as Error).message).to.match(/nsinit: mount_setattr\(MOUNT_ATTR_IDMAP\) on \/proc\/sys/)
    const claimedUid = (await stat(stateDir)).gid
    expect((await hostProcesses()).filter((process) => process.uid === claimedUid)).to.deep.equal([])
    await rm(stateDir, {recursive: true})
  })

  it('says what is missing when bubblewrap is not there', async () => {
    const missing = new LinuxNsBackend({bwrap_path: '/nonexistent/bwrap'})
    expect(await missing.availability()).to.deep.include({ok: false, fix: 'apt-get install -y bubblewrap (or set backends.linux-ns.bwrap_path in config.yaml)'})
    const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
    const failure = await missing.provision({sandboxId, policy: POLICY, workspaceSource: null, stateDir}).catch((error: unknown) => error)
    expect(failure).to.be.instanceOf(CleanroomError).and.have.property('code', 'backend_unavailable')
  })

  it('follows a bwrap_path link in a dir only root can search, and says what to fix when bwrap itself is in one', async () => {
    const privateDir = await dirs.make()
    const system = await realpath((await exec('sh', ['-c', 'command -v bwrap'])).stdout.trim())
    await symlink(system, join(privateDir, 'bwrap-link'))
    await copyFile(system, join(privateDir, 'bwrap-copy'))
    await chmod(join(privateDir, 'bwrap-copy'), 0o755)

    const linked = new LinuxNsBackend({bwrap_path: join(privateDir, 'bwrap-link')})
    expect(await linked.availability()).to.deep.include({ok: true})
    const linkedSandbox = await newStateDir(sandboxesDir)
    const runtime = (await linked.provision({...linkedSandbox, policy: POLICY, workspaceSource: null})) as LinuxNsRuntime & BackendRuntime
    everySandbox.push(runtime)
    try {
      expect(await sh(linked, runtime, 'echo through the link')).to.equal('through the link\n')
    } finally {
      await linked.terminate(runtime)
      await linked.release()
    }

    const copied = new LinuxNsBackend({bwrap_path: join(privateDir, 'bwrap-copy')})
    const problem = `${join(privateDir, 'bwrap-copy')} cannot be run by the sandboxes' own uids: ${privateDir} is not searchable by other users`
    expect(await copied.availability()).to.deep.equal({
      ok: false,
      problem,
      fix: `chmod o+x ${privateDir}, or point backends.linux-ns.bwrap_path in config.yaml at a bwrap every user can run (apt-get install -y bubblewrap puts one in /usr/bin)`,
    })
    const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
    const failure = await copied.provision({sandboxId, policy: POLICY, workspaceSource: null, stateDir}).catch((error: unknown) => error)
    expect(failure).to.be.instanceOf(CleanroomError).and.deep.include({code: 'backend_unavailable', message: `the linux-ns backend cannot run on this machine: ${problem}`})
  })

  it('works for a non-root daemon (uid 1234, unprivileged user namespace)', async () => {
    const dir = await dirs.make()
    const repo = join(dir, 'repo')
    await mkdir(join(repo, 'sub'), {recursive: true})
    await writeFile(join(repo, 'a.txt'), 'hello\n')
    await writeFile(join(repo, 'sub', 'b.txt'), 'deep\n')
    await writeFile(join(repo, '.gitignore'), '.env\n')
    await writeFile(join(repo, '.env'), 'TOKEN=1\n')
    const sandboxes = join(dir, 'sandboxes')
    await mkdir(sandboxes)
    await exec('chown', ['-R', `${NON_ROOT_UID}:${NON_ROOT_UID}`, dir])
    await chmod(dir, 0o700)
    await exec('git', ['init', '-q', repo], {uid: NON_ROOT_UID, gid: NON_ROOT_UID, env: {PATH: process.env.PATH, HOME: '/nonexistent'}})
    const before = await treeDigest(repo)

    const script = new URL('nonroot-sandbox.ts', import.meta.url).pathname
    const {stdout} = await exec(
      'setpriv',
      [`--reuid=${NON_ROOT_UID}`, `--regid=${NON_ROOT_UID}`, '--clear-groups', process.execPath, '--import', 'tsx', script, repo, sandboxes],
      {cwd: new URL('../..', import.meta.url).pathname, env: {PATH: process.env.PATH, HOME: '/nonexistent', TMPDIR: dir}},
    )
    const facts = JSON.parse(stdout) as Record<string, unknown> & {runtime: LinuxNsRuntime}
    everySandbox.push(facts.runtime)
    expect(facts).to.deep.include({
      daemonUid: NON_ROOT_UID,
      id: '1000 1000\n',
      persisted: 'kept\nhome\ntmp\n',
      modifyAndDelete: 'hello\nmore\n',
      ignoredVisible: false,
      aliveBefore: true,
      aliveAfter: false,
    })
    expect(facts.runtime).to.include({userns_mode: true}).and.not.have.property('host_uid')
    expect(facts.status).to.match(/^CapEff:\s+0{16}$/m).and.match(/^NoNewPrivs:\s+1$/m)
    expect(String(facts.links).trim().split('\n').map((line) => line.split(/\s+/)[0])).to.deep.equal(['lo'])
    expect(await treeDigest(repo)).to.deep.equal(before)
    // tsx's esbuild helper may linger as a zombie until the machine's init reaps it.
    await waitFor('no process of uid 1234', async () => (await hostProcesses()).every((process) => process.uid !== NON_ROOT_UID))
    // What the non-root daemon's store does next: remove the state dir, as that uid.
    await exec('setpriv', [`--reuid=${NON_ROOT_UID}`, `--regid=${NON_ROOT_UID}`, '--clear-groups', 'rm', '-r', facts.runtime.state_dir])
  })
})
