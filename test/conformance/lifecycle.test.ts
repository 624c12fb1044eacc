import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {access, mkdir, readdir, readFile, rm, utimes, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {promisify} from 'node:util'
import {extract, pack} from 'tar-stream'

import type {BackendName} from '../../src/config/schema.js'
import {CleanroomError} from '../../src/errors/index.js'
import type {BackendRuntime} from '../../src/sandbox/backend.js'
import {RUN_ROOT} from '../../src/sandbox/backends/gvisor/provision.js'
import {probeCgroups} from '../../src/sandbox/backends/linux-ns/cgroup-host.js'
import {sweepRunDirs} from '../../src/sandbox/backends/gvisor/reclaim.js'
import {newSandboxId} from '../../src/sandbox/ids.js'
import {collect, mountLinesMentioning, newStateDir, POLICY, run, sh, terminalOutput, treeDigest, waitFor} from '../sandbox/helpers.js'
import {tempDirs} from '../helpers/tmp.js'
import {backendNamed, BACKENDS, requireBackend} from './backends.js'

const exec = promisify(execFile)
const TEMP_PREFIX = 'cleanroom-conformance-'

/** What every backend's runtime record has, and the host process whose death is the sandbox's (its init, or gVisor's kernel). */
interface AnyRuntime {
  state_dir: string
  host_uid: number
  run_dir?: string
}
const KERNEL_OR_INIT: Record<BackendName, (runtime: BackendRuntime) => number> = {
  'linux-ns': (runtime) => runtime.init_pid as number,
  gvisor: (runtime) => runtime.sandbox_pid as number,
}

/** Processes running as one of `uids`; zombies (exited, waiting for the machine's init to reap them) hold nothing and do not count. */
async function liveProcessesOf(uids: ReadonlySet<number>): Promise<string[]> {
  const found: string[] = []
  for (const pid of (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))) {
    const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])
    if (uids.has(uid) && /^State:\s+Z/m.exec(status) === null) found.push(`${pid} ${/^Name:\s+(.*)$/m.exec(status)?.[1]} (uid ${uid})`)
  }
  return found
}

/**
 * What a sandbox is, the same on every backend: persistence, exit codes, streams,
 * stdin, the terminal, files in and out, the workload's identity, its view of the
 * host, and that nothing of it is left once it is reclaimed (the daemon's remove).
 */
for (const name of BACKENDS) {
  describe(`sandbox conformance (${name})`, function () {
    this.timeout(60_000)
    const backend = backendNamed(name)
    const dirs = tempDirs(TEMP_PREFIX)
    const live: BackendRuntime[] = []
    const everySandbox: AnyRuntime[] = []
    const hostFiles: string[] = []
    let sandboxesDir: string

    before(async () => {
      await requireBackend(name)
      expect(process.getuid?.(), 'these tests drive the root-daemon path: run them as root').to.equal(0)
    })

    beforeEach(async () => {
      sandboxesDir = join(await dirs.make(), 'sandboxes')
      await mkdir(sandboxesDir)
    })

    afterEach(async () => {
      const failures: unknown[] = []
      for (const runtime of live.splice(0)) await backend.reclaim(runtime.state_dir as string, runtime).catch((error: unknown) => failures.push(error))
      for (const file of hostFiles.splice(0)) await rm(file, {force: true})
      await dirs.cleanup()
      if (failures.length > 0) throw failures[0]
    })

    after(async () => {
      // What the backend holds for sandboxes to come (a uid claimed ahead) goes, as when a daemon stops.
      await backend.release?.()
      const uids = new Set(everySandbox.map((sandbox) => sandbox.host_uid))
      const leftovers = await liveProcessesOf(uids)
      expect(leftovers, 'processes of the test sandboxes').to.deep.equal([])
      // Only this run's sandboxes: other runs on the machine have mounts of their own under the same prefix.
      expect(await mountLinesMentioning(everySandbox.map((sandbox) => sandbox.state_dir)), 'mounts of the test sandboxes').to.deep.equal([])
      const runDirs = everySandbox.flatMap((sandbox) => (sandbox.run_dir ? [sandbox.run_dir] : []))
      const kept = await Promise.all(runDirs.map((dir) => access(dir).then(() => dir, () => undefined)))
      expect(kept.filter(Boolean), 'run dirs of the test sandboxes').to.deep.equal([])
    })

    async function makeRepo(files: Record<string, string> = {'a.txt': 'hello\n', 'sub/b.txt': 'deep\n'}): Promise<string> {
      const repo = join(await dirs.make(), 'repo')
      for (const [path, text] of Object.entries(files)) {
        await mkdir(join(repo, path, '..'), {recursive: true})
        await writeFile(join(repo, path), text, {mode: 0o644})
      }
      return repo
    }

    async function createSandbox(workspaceSource: string | null): Promise<BackendRuntime & AnyRuntime> {
      const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
      const runtime = (await backend.provision({sandboxId, policy: POLICY, workspaceSource, stateDir})) as BackendRuntime & AnyRuntime
      live.push(runtime)
      everySandbox.push(runtime)
      return runtime
    }

    describe('a sandbox', () => {
      let sandbox: BackendRuntime & AnyRuntime
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

      it('passes a signal the caller sends on to the workload', async () => {
        const sleeping = await backend.exec(sandbox, {argv: ['sleep', '30'], env: {}, tty: false})
        await waitFor('the workload', async () => (await sh(backend, sandbox, 'ps -eo comm')).includes('sleep'))
        sleeping.signal('SIGTERM')
        expect(await sleeping.exited).to.deep.equal({exit_code: 143, signal: 'SIGTERM'})
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

      it('passes the environment it is given, and only that', async () => {
        const ran = await run(backend, sandbox, ['sh', '-c', 'echo "$GIVEN"; env | grep -c "^DAEMON_ONLY=" || true'], {env: {GIVEN: 'a b\tc'}})
        expect(ran.stdout.toString()).to.equal('a b\tc\n0\n')
      })

      it('runs the workload as uid 1000 with no capabilities and no_new_privs', async () => {
        expect(await sh(backend, sandbox, 'echo $(id -u) $(id -g) $(id -un)')).to.equal('1000 1000 cleanroom\n')
        const status = await sh(backend, sandbox, 'grep -E "^(CapEff|CapBnd)" /proc/self/status')
        expect(status).to.match(/^CapEff:\s+0000000000000000$/m)
        expect(status).to.match(/^CapBnd:\s+0000000000000000$/m)
        // prctl(PR_GET_NO_NEW_PRIVS) itself: gVisor's /proc/self/status has no NoNewPrivs line.
        expect(await sh(backend, sandbox, 'python3 -c "import ctypes; print(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))"')).to.equal('1\n')
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

      it('runs 64 execs, 8 at a time, each with its own input, output, error output and exit code', async () => {
        const one = async (n: number) => {
          const ran = await run(backend, sandbox, ['sh', '-c', 'read line; echo "out $line"; echo "err $line" >&2; exit $(( $line % 7 ))'], {stdin: `${n}\n`})
          return {n, exit: ran.exitCode, stdout: ran.stdout.toString(), stderr: ran.stderr.toString()}
        }
        const seen: Array<Awaited<ReturnType<typeof one>>> = []
        for (let round = 0; round < 8; round++) seen.push(...(await Promise.all(Array.from({length: 8}, (_, k) => one(round * 8 + k)))))
        expect(seen).to.deep.equal(Array.from({length: 64}, (_, n) => ({n, exit: n % 7, stdout: `out ${n}\n`, stderr: `err ${n}\n`})))
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

      it('says whether a workload runs in it', async () => {
        expect(await backend.hasWorkload(sandbox), 'idle').to.equal(false)
        const sleeping = await backend.exec(sandbox, {argv: ['sleep', '30'], env: {}, tty: false})
        await waitFor('the workload to be seen', () => backend.hasWorkload(sandbox))
        sleeping.signal('SIGKILL')
        await sleeping.exited
        await waitFor('the sandbox to be idle again', async () => !(await backend.hasWorkload(sandbox)))
      })

      it('is gone after reclaim, with no process of its uid left and a removable state dir', async () => {
        await sh(backend, sandbox, 'echo x > /workspace/f && rm a.txt && (sleep 60 >/dev/null 2>&1 &)')
        expect(await backend.isAlive(sandbox)).to.equal(true)
        await backend.reclaim(sandbox.state_dir, sandbox)
        expect(await backend.isAlive(sandbox)).to.equal(false)
        expect(await liveProcessesOf(new Set([sandbox.host_uid]))).to.deep.equal([])
        await rm(sandbox.state_dir, {recursive: true})
        await access(sandbox.state_dir).then(
          () => expect.fail('the state dir is still there'),
          () => undefined,
        )
        await backend.reclaim(sandbox.state_dir, sandbox)
      })

      it('says when its init exits, and fails an exec with sandbox_failed after', async () => {
        const exited = new Promise<string>((resolve) => backend.watchExit(sandbox, resolve))
        process.kill(KERNEL_OR_INIT[name](sandbox), 'SIGKILL')
        expect(await exited).to.match(/^its init process exited/)
        await waitFor('the sandbox to be dead', async () => !(await backend.isAlive(sandbox)))
        const failure = await backend.exec(sandbox, {argv: ['true'], env: {}, tty: false}).then((started) => started.exited).catch((error: unknown) => error)
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

    it('reclaims a create cut short, with only its state dir to go on', async () => {
      const sandbox = await createSandbox(null)
      live.splice(live.indexOf(sandbox), 1)
      await backend.reclaim(sandbox.state_dir)
      expect(await backend.isAlive(sandbox)).to.equal(false)
      expect(await liveProcessesOf(new Set([sandbox.host_uid]))).to.deep.equal([])
    })

    it('refuses a policy naming an image rather than running the host rootfs (a backend with images.oci: without the image; one without: at all)', async () => {
      const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
      const policy = {...POLICY, image_ref: `registry.example/x@sha256:${'a'.repeat(64)}`}
      const failure = await backend.provision({sandboxId, policy, workspaceSource: null, stateDir}).catch((error: unknown) => error)
      if (backend.capabilities()['images.oci']) {
        expect(failure).to.be.instanceOf(CleanroomError).and.include({code: 'image_not_pulled'})
      } else {
        expect(failure).to.be.instanceOf(CleanroomError).and.include({code: 'backend_capability_mismatch'})
        expect((failure as Error).message).to.include('images.oci')
      }
    })

    if (name === 'gvisor') {
      it('sweeps run dirs a killed daemon left (no container in runsc, or a dead one), never a live sandbox\'s or a young one', async () => {
        const [live, dead] = await Promise.all([createSandbox(null), createSandbox(null)])
        const stale = join(RUN_ROOT, newSandboxId())
        const young = join(RUN_ROOT, newSandboxId())
        await Promise.all([mkdir(join(stale, 'runsc'), {recursive: true}), mkdir(join(young, 'runsc'), {recursive: true})])
        try {
          // A sandbox that died while no daemon watched it: runsc still lists its container as running.
          process.kill(KERNEL_OR_INIT[name](dead), 'SIGKILL')
          await waitFor('the killed sandbox and its gofer to be gone', async () => !(await backend.isAlive(dead)) && (await liveProcessesOf(new Set([dead.host_uid]))).length === 0)
          const hourAgo = new Date(Date.now() - 3_600_000)
          await Promise.all([utimes(stale, hourAgo, hourAgo), utimes(live.run_dir!, hourAgo, hourAgo), utimes(dead.run_dir!, hourAgo, hourAgo)])
          const removed = await sweepRunDirs('runsc')
          expect(removed).to.include(stale).and.include(dead.run_dir).and.not.include(live.run_dir).and.not.include(young)
          await access(young)
          expect(await sh(backend, live, 'echo alive')).to.equal('alive\n')
        } finally {
          await Promise.all([rm(stale, {recursive: true, force: true}), rm(young, {recursive: true, force: true})])
        }
      })
    }

    // Limits need cgroups (a root daemon): without them, asking for limits must fail at launch, never run unlimited.
    it('enforces the resources a policy asks for when cgroups are usable, and refuses them, naming them, when not', async () => {
      const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
      const policy = {...POLICY, resources: {memory_bytes: 1024 ** 3, vcpus: 1}}
      if (probeCgroups().ok) {
        const runtime = (await backend.provision({sandboxId, policy, workspaceSource: null, stateDir})) as BackendRuntime & AnyRuntime
        live.push(runtime)
        everySandbox.push(runtime)
        // The policy's floor (1 GiB) is below the default limit (8 GiB), which stays.
        expect(backend.resourcesOf?.(runtime)).to.include({memory_bytes: 8 * 1024 ** 3})
        return
      }
      const failure = await backend.provision({sandboxId, policy, workspaceSource: null, stateDir}).catch((error: unknown) => error)
      expect(failure).to.be.instanceOf(CleanroomError).and.include({code: 'backend_capability_mismatch'})
      expect((failure as Error).message).to.match(new RegExp(`^backend ${name} cannot enforce this policy: it lacks resources.cpu \\(sandbox.resources.vcpus\\), resources.memory`))
    })
  })
}
