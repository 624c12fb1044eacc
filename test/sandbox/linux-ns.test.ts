import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {access, chmod, copyFile, mkdir, readFile, readlink, realpath, rm, stat, symlink, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import {extract, pack} from 'tar-stream'

import {CleanroomError} from '../../src/errors/index.js'
import type {BackendRuntime} from '../../src/sandbox/backend.js'
import {LinuxNsBackend, type LinuxNsRuntime} from '../../src/sandbox/backends/linux-ns/index.js'
import {HOST_UID_RANGE} from '../../src/sandbox/backends/linux-ns/uids.js'
import {tempDirs} from '../helpers/tmp.js'
import {
  collect,
  hostProcesses,
  mountLinesMentioning,
  newStateDir,
  POLICY,
  run,
  sh,
  terminalOutput,
  treeDigest,
  waitFor,
} from './helpers.js'

const exec = promisify(execFile)
const TEMP_PREFIX = 'cleanroom-linux-ns-'
const NON_ROOT_UID = 1234

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

    it('keeps files between execs in /workspace, $HOME and /tmp', async () => {
      await sh(backend, sandbox, 'echo one > /workspace/w.txt && echo two > $HOME/h.txt && echo three > /tmp/t.txt')
      expect(await sh(backend, sandbox, 'cat /workspace/w.txt /home/cleanroom/h.txt /tmp/t.txt')).to.equal('one\ntwo\nthree\n')
    })

    it("reports the workload's exit codes, 127 for a missing command and 128+n for a signal", async () => {
      expect((await run(backend, sandbox, ['true'])).exitCode).to.equal(0)
      expect((await run(backend, sandbox, ['false'])).exitCode).to.equal(1)
      expect((await run(backend, sandbox, ['sh', '-c', 'exit 7'])).exitCode).to.equal(7)
      const missing = await run(backend, sandbox, ['no-such-command-here'])
      expect(missing.exitCode).to.equal(127)
      expect(missing.stderr.toString()).to.equal('no-such-command-here: command not found\n')
      const interrupted = await run(backend, sandbox, ['sh', '-c', 'kill -INT $$'])
      expect([interrupted.exitCode, interrupted.signal]).to.deep.equal([130, 'SIGINT'])
    })

    it('keeps stdout and stderr apart, bytes intact', async () => {
      const ran = await run(backend, sandbox, ['sh', '-c', String.raw`printf '\000\377\001'; printf '\376\000' >&2`])
      expect(ran.stdout).to.deep.equal(Buffer.from([0x00, 0xff, 0x01]))
      expect(ran.stderr).to.deep.equal(Buffer.from([0xfe, 0x00]))
    })

    it('pipes stdin through: cat echoes 1 MiB exactly', async () => {
      const input = randomBytes(1024 * 1024)
      const ran = await run(backend, sandbox, ['cat'], {stdin: input})
      expect(ran.exitCode).to.equal(0)
      expect(ran.stdout.equals(input)).to.equal(true)
    })

    it('runs the workload as uid 1000 with no capabilities and no_new_privs', async () => {
      expect(await sh(backend, sandbox, 'echo $(id -u) $(id -g) $(id -un)')).to.equal('1000 1000 cleanroom\n')
      const status = await sh(backend, sandbox, 'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status')
      expect(status).to.match(/^CapEff:\s+0000000000000000$/m)
      expect(status).to.match(/^CapBnd:\s+0000000000000000$/m)
      expect(status).to.match(/^NoNewPrivs:\s+1$/m)
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

    it('has loopback only', async () => {
      expect(await sh(backend, sandbox, 'ip -br link | cut -d" " -f1')).to.equal('lo\n')
    })

    it("cannot reach a TCP server on the host's 127.0.0.1", async () => {
      let connections = 0
      const server: Server = createServer((socket) => {
        connections++
        socket.destroy()
      })
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
      try {
        const port = (server.address() as {port: number}).port
        const script = `const s = require('net').connect(${port}, '127.0.0.1'); s.on('connect', () => process.exit(0)); s.on('error', (e) => { console.error(e.code); process.exit(3) })`
        const ran = await run(backend, sandbox, ['node', '-e', script])
        expect([ran.exitCode, ran.stderr.toString().trim()]).to.deep.equal([3, 'ECONNREFUSED'])
        expect(connections).to.equal(0)
      } finally {
        server.close()
      }
    })

    it('resolves no names', async () => {
      const ran = await run(backend, sandbox, ['getent', 'hosts', 'registry.npmjs.org'])
      expect(ran.exitCode).to.not.equal(0)
      expect(ran.stdout.toString()).to.equal('')
      expect(await sh(backend, sandbox, 'cat /etc/hostname; grep -c nameserver /etc/resolv.conf || true')).to.equal('cleanroom\n0\n')
    })

    it("does not see the host's home", async () => {
      const secret = join('/root', `.cleanroom-test-secret-${randomBytes(4).toString('hex')}`)
      hostFiles.push(secret)
      await writeFile(secret, 'secret\n', {mode: 0o644})
      const ran = await run(backend, sandbox, ['cat', secret])
      expect(ran.exitCode).to.equal(1)
      expect(ran.stdout.toString()).to.equal('')
    })

    it('lets the workload modify and delete root-owned repo files, never changing the host repo', async () => {
      const before = await treeDigest(repo)
      await sh(backend, sandbox, 'echo more >> a.txt && rm sub/b.txt && rmdir sub && echo new > new.txt && chmod 600 a.txt')
      expect(await sh(backend, sandbox, 'cat a.txt; ls -A')).to.equal('hello\nmore\na.txt\nnew.txt\n')
      expect(await treeDigest(repo)).to.deep.equal(before)
    })

    it('cannot write the host root filesystem', async () => {
      const ran = await run(backend, sandbox, ['sh', '-c', 'touch /usr/x || touch /etc/x || touch /x'])
      expect(ran.exitCode).to.not.equal(0)
    })

    it('gives a TTY of 80x24 by default that follows resizes', async () => {
      const terminal = await backend.exec(sandbox, {argv: ['sh', '-c', 'test -t 0 && stty size; read line; stty size'], env: {}, tty: true})
      expect(terminal.stderr).to.equal(null)
      const output = terminalOutput(terminal)
      await waitFor('the first size', () => output().includes('24 80'))
      terminal.resize(100, 30)
      terminal.stdin.write('\n')
      expect((await terminal.exited).exit_code).to.equal(0)
      expect(output()).to.include('30 100')
    })

    it('delivers ^C on a TTY to the workload, which may trap it', async () => {
      const terminal = await backend.exec(sandbox, {argv: ['sh', '-c', 'trap "echo CAUGHT; exit 3" INT; echo READY; sleep 5 & wait'], env: {}, tty: true})
      const output = terminalOutput(terminal)
      await waitFor('the trap to be set', () => output().includes('READY'))
      terminal.stdin.write('\u0003')
      expect(await terminal.exited).to.deep.equal({exit_code: 3, signal: null})
      expect(output()).to.include('CAUGHT')
    })

    it('runs two execs at once', async () => {
      const [one, two] = await Promise.all([sh(backend, sandbox, 'sleep 0.3; echo one'), sh(backend, sandbox, 'sleep 0.3; echo two')])
      expect([one, two]).to.deep.equal(['one\n', 'two\n'])
    })

    it('unpacks an archive as the sandbox user and archives a path back', async () => {
      const archive = pack()
      archive.entry({name: 'creds/token', mode: 0o600}, 'secret\n')
      archive.finalize()
      await backend.extractArchive(sandbox, Readable.from(archive), '/home/cleanroom/.config/tool')
      expect(await sh(backend, sandbox, 'stat -c "%a %U" ~/.config/tool/creds/token; cat ~/.config/tool/creds/token')).to.equal('600 cleanroom\nsecret\n')

      const entries: Record<string, string> = {}
      const unpack = extract()
      ;(await backend.readArchive(sandbox, '/home/cleanroom/.config/tool/creds')).pipe(unpack)
      // tar-stream's entries are streamx streams: async iterable, though its types do not say so.
      for await (const entry of unpack) entries[entry.header.name] = (await collect(entry as unknown as AsyncIterable<Buffer>)).toString()
      expect(entries).to.deep.equal({'creds/': '', 'creds/token': 'secret\n'})
    })

    it('refuses a missing path to archive and a broken archive to unpack', async () => {
      const missing = await backend.readArchive(sandbox, '/nowhere/at/all').catch((error: unknown) => error)
      expect(missing).to.be.instanceOf(CleanroomError).and.include({code: 'bad_request', message: '/nowhere/at/all: no such file or directory in the sandbox'})
      const broken = await backend.extractArchive(sandbox, Readable.from([Buffer.from('not a tar archive at all')]), '/tmp/x').catch((error: unknown) => error)
      expect(broken).to.be.instanceOf(CleanroomError).and.have.property('code', 'bad_request')
      expect((broken as Error).message).to.match(/^could not unpack the archive into \/tmp\/x: tar: /)
    })

    it('refuses a working directory that does not exist', async () => {
      const started = await backend.exec(sandbox, {argv: ['true'], env: {}, tty: false, cwd: '/no/such/dir'})
      const failure = await started.exited.catch((error: unknown) => error)
      expect(failure).to.be.instanceOf(CleanroomError).and.have.property('code', 'bad_request')
    })

    it('is gone after terminate, with no process left and a removable state dir', async () => {
      await sh(backend, sandbox, 'echo x > /workspace/f && rm a.txt')
      expect(await backend.isAlive(sandbox)).to.equal(true)
      await backend.terminate(sandbox)
      expect(await backend.isAlive(sandbox)).to.equal(false)
      expect((await hostProcesses()).filter((process) => process.uid === sandbox.host_uid)).to.deep.equal([])
      await rm(sandbox.state_dir, {recursive: true})
      await access(sandbox.state_dir).then(
        () => expect.fail('the state dir is still there'),
        () => undefined,
      )
      await backend.terminate(sandbox)
    })

    it('fails an exec with sandbox_failed once its init has died', async () => {
      process.kill(sandbox.init_pid, 'SIGKILL')
      await waitFor('the init to die', async () => !(await backend.isAlive(sandbox)))
      const failure = await backend.exec(sandbox, {argv: ['true'], env: {}, tty: false}).catch((error: unknown) => error)
      expect(failure).to.be.instanceOf(CleanroomError).and.have.property('code', 'sandbox_failed')
    })
  })

  it('hides the files git ignores, never .git', async () => {
    const repo = await makeRepo({'.gitignore': '.env\nnode_modules/\n*.log\n', '.env': 'TOKEN=1\n', 'node_modules/x/index.js': '', 'src/app.log': 'log\n', 'src/main.js': 'main\n', 'a.txt': 'a\n'})
    await exec('git', ['init', '-q', repo])
    const sandbox = await createSandbox(repo)
    expect(await sh(backend, sandbox, 'ls -A; echo --; ls -A src')).to.equal('.git\n.gitignore\na.txt\nsrc\n--\nmain.js\n')
    expect(await sh(backend, sandbox, 'echo mine > .env && cat .env')).to.equal('mine\n')
    expect(await readFile(join(repo, '.env'), 'utf8')).to.equal('TOKEN=1\n')
  })

  it('gives an empty, writable workspace when there is no source', async () => {
    const sandbox = await createSandbox(null)
    expect(await sh(backend, sandbox, 'ls -A /workspace; touch /workspace/f && ls /workspace')).to.equal('f\n')
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

  it('refuses a policy naming an image when given no image, rather than running the host rootfs', async () => {
    const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
    const policy = {...POLICY, image_ref: 'ghcr.io/acme/img@sha256:' + '0'.repeat(64)}
    const failure = await backend.provision({sandboxId, policy, workspaceSource: null, stateDir}).catch((error: unknown) => error)
    expect(failure).to.be.instanceOf(CleanroomError).and.have.property('code', 'image_not_pulled')
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
