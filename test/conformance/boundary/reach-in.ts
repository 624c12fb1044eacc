import {expect} from 'chai'
import {execa} from 'execa'
import {chmod, copyFile, mkdir, readdir, readFile, readlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {DaemonClient} from '../../../src/client/client.js'
import {socketPathOf} from '../../../src/client/connect.js'
import type {AuditEvent} from '../../../src/egress/audit.js'
import type {BackendName} from '../../../src/config/schema.js'
import {DEFAULT_POLICY} from '../../../src/policy/compile.js'
import {isolatedEnv} from '../../helpers/cli.js'
import {sandboxPids, leftoverSandboxes, sandboxesOf, startTestDaemon, stopCliDaemon, type TestDaemon} from '../../helpers/daemon.js'
import {tempDirs} from '../../helpers/tmp.js'
import {buildFdTakeover, buildSyscallProbe, copyOfEtc, FILTERED, git, inPrivateMounts, repositoryWithSecrets, TOKEN} from '../boundary-fixtures.js'
import {connectHead, expectRefusal, SandboxUnderTest, until} from '../sandbox.js'

const RUN = fileURLToPath(new URL('../../../bin/run.js', import.meta.url))
const FLOOD = fileURLToPath(new URL('../connection-flood.mjs', import.meta.url))
const PROBE = fileURLToPath(new URL('../sandbox-probe.mjs', import.meta.url))

/** Runs the suite's steps in order, every one even after a failure, and throws the first failure. */
async function allOf(steps: Array<() => Promise<unknown>>): Promise<void> {
  const failures: unknown[] = []
  for (const step of steps) await step().catch((error: unknown) => failures.push(error))
  if (failures.length > 0) throw failures[0]
}

/**
 * Cleanroom's own processes inside a sandbox, which may hold fds above 2. linux-ns: bwrap
 * as pid 1 keeps an event fd; the held `sleep` is pid 2. gvisor: `nsinit init` (pid 1) holds
 * none; the forwarder holds its listening and relayed sockets and its epoll fd, and each
 * exec's `nsinit run` its status and control sockets to the daemon, a signalfd, and a
 * terminal's master and slave. Sockets, epoll and signal fds cannot be opened through /proc.
 */
const OWN_PROCESSES: Record<BackendName, {expected: string[]; names: string[]; init: RegExp; helpers: RegExp}> = {
  'linux-ns': {expected: ['1 bwrap', '2 sleep'], names: ['bwrap'], init: /^anon_inode:\[eventfd\]$/, helpers: /^$/},
  gvisor: {expected: ['1 cleanroom-nsini'], names: ['cleanroom-nsini'], init: /^$/, helpers: /^(socket:\[\d+\]|host:\[\d+\]|anon_inode:\[(eventpoll|signalfd)\]|\/dev\/pts\/(ptmx|\d+))$/},
}

/**
 * Cleanroom's own processes inside that the seccomp filter does not confine: linux-ns's
 * bwrap (pid 1, which loads it for the held command). gVisor's init installs it first
 * thing and starts the proxy's forwarder after; each `nsinit run` installs it on itself.
 */
const UNFILTERED: Record<BackendName, string[]> = {'linux-ns': ['1 bwrap'], gvisor: []}

/** The processes a sandbox always runs, by pid: linux-ns's init (bwrap) and held command; gVisor's init (nsinit init) alone. */
const LONG_LIVED: Record<BackendName, string[]> = {'linux-ns': ['1', '2'], gvisor: ['1']}

/** What reaches into a sandbox of `backend`, and what a sandbox can do to the daemon and the host. */
export function reachingIn(backend: BackendName): void {

  describe('what reaches in', () => {
    const dirs = tempDirs('cleanroom-reach-in-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined
    let repo = ''
    let sandbox: SandboxUnderTest

    before(async function () {
      this.timeout(60_000)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      repo = await repositoryWithSecrets(dir)
      await buildSyscallProbe(repo)
      await buildFdTakeover(repo)
      test = await startTestDaemon(join(dir, 'daemon'))
      const created = await test.client.createSandbox({backend, policy: DEFAULT_POLICY, workspace_source: repo, allow_all: false})
      sandbox = new SandboxUnderTest(() => test!.client, created.sandbox_id)
    })

    after(async function () {
      this.timeout(30_000)
      await allOf([
        async () => test?.daemon.close({shutdownSandboxes: true}),
        async () => expect(await leftoverSandboxes(sandboxesBefore, dir), 'sandboxes of this suite still running').to.deep.equal([]),
        () => dirs.cleanup(),
      ])
    })

    it('no process inside holds an fd above 2, but cleanroom\'s own processes there, whose fds the workload cannot open', async () => {
      // Every process but the looking one (node's own fds are its event loop's): pid, name, each fd's
      // target, and whether the workload could open it through /proc.
      const script = `const fs = require('fs'); const seen = {}
        for (const pid of fs.readdirSync('/proc').filter((name) => /^\\d+$/.test(name) && Number(name) !== process.pid)) {
          try {
            const fds = {}
            for (const fd of fs.readdirSync('/proc/' + pid + '/fd')) {
              let opened = false
              try { fs.closeSync(fs.openSync('/proc/' + pid + '/fd/' + fd, 'r')); opened = true } catch {}
              fds[fd] = {target: fs.readlinkSync('/proc/' + pid + '/fd/' + fd), opened}
            }
            seen[pid + ' ' + fs.readFileSync('/proc/' + pid + '/comm', 'utf8').trim()] = fds
          } catch {}
        }
        console.log(JSON.stringify(seen))`
      const ran = await test!.client.run(sandbox.id, {argv: ['node', '-e', script], env: {}})
      expect(ran.exit_code, ran.stderr).to.equal(0)
      const seen = JSON.parse(ran.stdout) as Record<string, Record<string, {target: string; opened: boolean}>>
      const own = OWN_PROCESSES[backend]
      expect(Object.keys(seen), 'the processes looked at').to.include.members(own.expected)
      for (const [process, fds] of Object.entries(seen)) {
        const above2 = Object.entries(fds).filter(([fd]) => Number(fd) > 2)
        if (!own.names.includes(process.replace(/^\d+ /, ''))) {
          expect(above2, process).to.deep.equal([])
          continue
        }
        if (process.startsWith('1 ')) expect(above2.map(([, fd]) => fd.target), process).to.satisfy((targets: string[]) => targets.every((target) => own.init.test(target)))
        else for (const [fd, {target}] of above2) expect(target, `${process} fd ${fd}`).to.match(own.helpers)
        expect(above2.filter(([, fd]) => fd.opened), `${process}: fds the workload opened`).to.deep.equal([])
      }
    })

    it('runs every process inside under the seccomp filter with no capabilities, cleanroom\'s own ones too (the forwarder, the exec helper)', async () => {
      const ran = await sandbox.sh('for status in /proc/[0-9]*/status; do echo "$(grep -E "^(Pid|Name|Seccomp|CapEff):" "$status" | cut -f2 | tr "\\n" " ")"; done')
      expect(ran.exit_code, ran.stderr).to.equal(0)
      // Name, Pid, CapEff and Seccomp, in the order the kernel writes them, of every process still there when read (this exec's own too).
      const seen = ran.stdout.split('\n').map((line) => line.trim().split(' ')).filter((fields) => fields.length === 4)
      const processes = seen.map(([name, pid]) => `${pid} ${name}`)
      expect(processes, 'the processes looked at').to.include.members(OWN_PROCESSES[backend].expected)
      expect(processes.filter((name) => name.endsWith(' cleanroom-nsini')).length, 'cleanroom\'s own processes').to.be.at.least(backend === 'gvisor' ? 3 : 0)
      for (const [name, pid, capabilities, filter] of seen) {
        if (UNFILTERED[backend].includes(`${pid} ${name}`)) continue
        expect({capabilities, filter}, `${pid} ${name}`).to.deep.equal({capabilities: '0000000000000000', filter: '2'})
      }
    })

    it('holds no host file open in the init or the held command: the sandbox log cannot be written from inside', async () => {
      const log = join(test!.stateDir, 'sandboxes', sandbox.id, 'sandbox.log')
      const before = await readFile(log, 'latin1')
      // Every fd of pid 1 and 2: what it is, then two ways to write through it (see fd-takeover.c).
      const ran = await test!.client.run(sandbox.id, {argv: ['/workspace/fd-takeover', ...LONG_LIVED[backend]], env: {}})
      expect(ran.exit_code, ran.stderr).to.equal(0)
      const seen = JSON.parse(ran.stdout) as Record<string, {target: string; reopened: string; pidfd_getfd: string}>
      expect(Object.keys(seen), 'the fds looked at').to.include.members(LONG_LIVED[backend].map((pid) => `/proc/${pid}/fd/2`))
      // The attempts work where they can (/dev/null takes the bytes), so an unchanged log means something.
      if (backend === 'gvisor') {
        // gVisor's kernel has no pidfd_getfd (ENOSYS): reopening through /proc is the attempt that works.
        expect(Object.values(seen).map((outcome) => outcome.pidfd_getfd), JSON.stringify(seen)).to.satisfy((all: string[]) => all.every((outcome) => outcome === 'Function not implemented'))
        expect(Object.values(seen).map((outcome) => outcome.reopened), JSON.stringify(seen)).to.include('wrote')
      } else {
        expect(Object.values(seen).map((outcome) => outcome.pidfd_getfd), JSON.stringify(seen)).to.include('wrote')
      }
      // /dev/null, pipes, sockets and anonymous inodes only: nothing that names a file of the host.
      for (const [path, {target}] of Object.entries(seen)) expect(target, path).to.match(/^(?:\/dev\/null|pipe:\[\d+\]|socket:\[\d+\]|anon_inode:\[\w+\])$/)
      expect(await readFile(log, 'latin1'), 'the host\'s sandbox log').to.equal(before)
    })

    it('cannot create a user namespace: unshare -Ur fails with EPERM', async () => {
      const ran = await sandbox.sh('unshare -Ur true')
      expect(ran.exit_code).to.equal(1)
      expect(ran.stderr).to.include('Operation not permitted')
    })

    it('every system call the seccomp filter refuses fails, and the rest go through', async () => {
      const ran = await sandbox.sh('./syscall-probe')
      expect(ran.exit_code, ran.stderr).to.equal(0)
      expect(JSON.parse(ran.stdout)).to.deep.equal(FILTERED)
    })

    it('node, npm, git and python keep working under the filter', async () => {
      const node = await sandbox.sh(`node -e 'const {execFileSync} = require("child_process"); const {Worker} = require("worker_threads"); new Worker("process.exit(0)", {eval: true}).on("exit", () => console.log(execFileSync("echo", ["spawned"]).toString().trim()))'`)
      expect([node.exit_code, node.stdout.trim()], node.stderr).to.deep.equal([0, 'spawned'])
      const npm = await sandbox.sh('npm --version')
      expect(npm.exit_code, npm.stderr).to.equal(0)
      const gitRun = await sandbox.sh('cd /tmp && git init -q g && cd g && echo x > f && git add f && git -c user.name=u -c user.email=u@u commit -q -m m && git log --format=%s')
      expect([gitRun.exit_code, gitRun.stdout.trim()], gitRun.stderr).to.deep.equal([0, 'm'])
      const hostHasPython = await execa('python3', ['--version']).then(() => true, () => false)
      if (hostHasPython) {
        const python = await sandbox.sh(`python3 -c 'import subprocess, threading; t = threading.Thread(target=lambda: None); t.start(); t.join(); print(subprocess.run(["true"]).returncode)'`)
        expect([python.exit_code, python.stdout.trim()], python.stderr).to.deep.equal([0, '0'])
      }
    })

    it('sees no file git ignores: the repository\'s, a nested repository\'s (two deep), a submodule\'s', async () => {
      const listing = await sandbox.sh('find . -name .git -prune -o -type f -print | sort')
      expect(listing.exit_code, listing.stderr).to.equal(0)
      const seen = listing.stdout.trim().split('\n')
      for (const hidden of ['./top.secret', './nested/nested.env', './nested/build/out.bin', './nested/inner/inner.env', './sub/sub.env', './sub/deep.log']) {
        expect(seen, `${hidden} is visible`).to.not.include(hidden)
      }
      for (const shown of ['./visible-top.txt', './nested/visible-nested.txt', './sub/visible-sub.txt', './sub/lib.txt', './.gitignore', './nested/.gitignore']) {
        expect(seen, `${shown} is hidden`).to.include(shown)
      }
    })

    it('sees .git/config without the token, credential helpers or extra headers, and git still knows the remote', async () => {
      const config = await sandbox.sh('cat .git/config; git config --local --get-regexp "^(credential|http)\\." || true; git remote get-url origin')
      expect(config.exit_code, config.stderr).to.equal(0)
      expect(config.stdout).to.not.include(TOKEN)
      expect(config.stdout.trim().split('\n').at(-1)).to.equal('https://github.com/acme/app.git')
      expect(config.stdout, config.stdout).to.not.match(/credential|extraheader/i)
      expect(await readFile(join(repo, '.git', 'config'), 'utf8'), 'the host repository keeps its config').to.include(TOKEN)
    })

    it('does not count the redaction as a change it made; its own edit of .git/config does count', async () => {
      const changes = await test!.client.workspaceChanges(sandbox.id)
      expect(changes.git_changes).to.equal(0)
      expect((await sandbox.sh('git config user.name sandbox')).exit_code).to.equal(0)
      expect((await test!.client.workspaceChanges(sandbox.id)).git_changes).to.equal(1)
      expect((await sandbox.sh('git config --unset user.name')).exit_code).to.equal(0)
    })

    it('keeps the generated /etc/passwd, group, hosts, hostname and resolv.conf when the host renames new files over its own', async () => {
      const etcDir = await dirs.make()
      const sandboxes = join(etcDir, 'sandboxes')
      await mkdir(sandboxes)
      const {before, after} = await inPrivateMounts<{before: string; after: string}>('etc', await copyOfEtc(etcDir), sandboxes)
      expect(before).to.include('cleanroom:x:1000:1000:').and.include('127.0.0.1\tlocalhost cleanroom').and.match(/cleanroom\n$/)
      expect(after).to.equal(before)
    })

    it('a root daemon hides what the repository owner\'s global excludes ignore (~/.config/git/ignore, found through the password database)', async () => {
      const ownerDir = await dirs.make()
      const uid = 4242
      const home = join(ownerDir, 'home')
      const ownerRepo = join(ownerDir, 'repo')
      await mkdir(join(home, '.config', 'git'), {recursive: true})
      await writeFile(join(home, '.config', 'git', 'ignore'), 'owner-global.secret\n')
      await mkdir(ownerRepo)
      await writeFile(join(ownerRepo, 'owner-global.secret'), 'S\n')
      await writeFile(join(ownerRepo, 'kept.txt'), 'k\n')
      await git(ownerRepo, 'init', '-q')
      await execa('chown', ['-R', `${uid}:${uid}`, home, ownerRepo])
      await chmod(ownerDir, 0o755)
      const passwd = join(ownerDir, 'passwd')
      await writeFile(passwd, `${await readFile('/etc/passwd', 'utf8')}cleanroom-test:x:${uid}:${uid}::${home}:/bin/sh\n`)
      const listing = await inPrivateMounts<{paths: string[]}>('ignored', passwd, ownerRepo)
      expect(listing.paths).to.deep.equal(['owner-global.secret'])
    })
  })

  describe('the daemon and the host', () => {
    const dirs = tempDirs('cleanroom-reach-host-')
    let home = ''
    let repo = ''
    let env: Record<string, string> = {}
    let sandboxesBefore = new Set<number>()

    /** The CLI as a user runs it, from a shell that has `fd` open on `openDir` when given. */
    const cli = async (args: string[], openDir?: string) => {
      const script = openDir === undefined ? 'exec "$@"' : 'exec 200<"$OPEN_DIR"; exec "$@"'
      const result = await execa('bash', ['-c', script, 'bash', process.execPath, RUN, ...args], {
        cwd: repo,
        env: {...env, NO_COLOR: '1', ...(openDir === undefined ? {} : {OPEN_DIR: openDir})},
        extendEnv: false,
        reject: false,
      })
      return {exitCode: result.exitCode ?? -1, stdout: result.stdout, stderr: result.stderr}
    }

    before(async () => {
      sandboxesBefore = await sandboxPids()
      home = await dirs.make()
      // XDG_CONFIG_HOME away from ~/.config: git must be told where it is.
      env = {...isolatedEnv(home), XDG_CONFIG_HOME: join(home, 'xdg-config'), PATH: process.env.PATH ?? '/usr/bin:/bin'}
      repo = join(home, 'repo')
      await mkdir(repo)
      await git(home, 'init', '-q', repo)
      await writeFile(join(repo, 'visible.txt'), 'v\n')
    })

    after(async function () {
      this.timeout(30_000)
      await allOf([
        () => stopCliDaemon(socketPathOf(undefined, env)),
        async () => expect(await leftoverSandboxes(sandboxesBefore, home), 'sandboxes of this suite still running').to.deep.equal([]),
        () => dirs.cleanup(),
      ])
    })

    it('an fd open in the shell that first runs cleanroom reaches neither the daemon it starts nor a sandbox', async () => {
      const secretDir = join(home, 'secret-dir')
      await mkdir(secretDir)
      await writeFile(join(secretDir, 'host-secret'), 'HOST\n')
      const created = await cli(['sandbox', 'create', '--backend', backend, '--json'], secretDir)
      expect(created.exitCode, created.stderr).to.equal(0)
      const id = (JSON.parse(created.stdout) as {sandbox_id: string}).sandbox_id

      const inside = await cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null; done; cat /proc/self/fd/200/host-secret'])
      expect(inside.stdout).to.not.include(secretDir)
      expect(inside.stderr).to.include('/proc/self/fd/200/host-secret: No such file or directory')

      const {pid: daemonPid} = await new DaemonClient(socketPathOf(undefined, env)).ping()
      const sandboxes = await sandboxesOf(sandboxesBefore, home)
      expect(sandboxes, 'the sandbox\'s bwrap processes').to.have.length.of.at.least(1)
      for (const pid of await withDescendants([daemonPid, ...sandboxes])) {
        const targets = await Promise.all((await readdir(`/proc/${pid}/fd`).catch(() => [])).map((fd) => readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')))
        expect(targets, `the fds of process ${pid}`).to.not.include(secretDir)
      }
      const removed = await cli(['sandbox', 'rm', id])
      expect(removed.exitCode, removed.stderr).to.equal(0)
    })

    it('hides what the user\'s global excludes ignore: $XDG_CONFIG_HOME/git/ignore, and core.excludesFile in $XDG_CONFIG_HOME/git/config and in ~/.gitconfig', async () => {
      const xdgGit = join(env.XDG_CONFIG_HOME!, 'git')
      await mkdir(xdgGit, {recursive: true})
      for (const name of ['by-xdg-ignore.txt', 'by-xdg-config.txt', 'by-home-config.txt']) await writeFile(join(repo, name), 'S\n')
      const seen = async () => {
        const ran = await cli(['exec', '--backend', backend, '--', 'ls', '-A'])
        expect(ran.exitCode, ran.stderr).to.equal(0)
        return ran.stdout.split('\n')
      }
      await writeFile(join(xdgGit, 'ignore'), 'by-xdg-ignore.txt\n')
      expect(await seen()).to.include('visible.txt').and.not.include('by-xdg-ignore.txt')
      await writeFile(join(home, 'xdg-excludes'), 'by-xdg-config.txt\n')
      await writeFile(join(xdgGit, 'config'), `[core]\n\texcludesFile = ${join(home, 'xdg-excludes')}\n`)
      expect(await seen()).to.include('visible.txt').and.not.include('by-xdg-config.txt')
      await writeFile(join(home, 'home-excludes'), 'by-home-config.txt\n')
      await writeFile(join(home, '.gitconfig'), '[core]\n\texcludesFile = ~/home-excludes\n')
      expect(await seen()).to.include('visible.txt').and.not.include('by-home-config.txt')
    })
  })

  describe('the daemon and the host: connections to the egress proxy', () => {
    const dirs = tempDirs('cleanroom-reach-conn-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined
    let flooder: SandboxUnderTest
    let neighbour: SandboxUnderTest
    const CAP = 1024

    before(async function () {
      this.timeout(30_000)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      const workspace = join(dir, 'workspace')
      await mkdir(workspace)
      await copyFile(FLOOD, join(workspace, 'connection-flood.mjs'))
      await copyFile(PROBE, join(workspace, 'sandbox-probe.mjs'))
      test = await startTestDaemon(join(dir, 'daemon'))
      const create = async () => {
        const created = await test!.client.createSandbox({backend, policy: DEFAULT_POLICY, workspace_source: workspace, allow_all: false})
        return new SandboxUnderTest(() => test!.client, created.sandbox_id)
      }
      flooder = await create()
      neighbour = await create()
    })

    after(async function () {
      this.timeout(30_000)
      await allOf([
        async () => test?.daemon.close({shutdownSandboxes: true}),
        async () => expect(await leftoverSandboxes(sandboxesBefore, dir), 'sandboxes of this suite still running').to.deep.equal([]),
        () => dirs.cleanup(),
      ])
    })

    it(`a sandbox holding thousands of idle connections is cut off at ${CAP}, noted once, while another sandbox's proxy and the daemon's API answer at once`, async () => {
      const limitLines = async () => (await flooder.audit()).filter((event: AuditEvent) => event.reason === 'connection_limit')
      const flood = flooder.sh('node connection-flood.mjs 3000 4000')
      await until(async () => (await limitLines()).length > 0, 20_000, 'the proxy to refuse connections past the limit')

      const started = performance.now()
      await test!.client.ping()
      const pingMs = performance.now() - started
      const answer = await neighbour.probeOne({mode: 'proxy', args: {steps: [{send: connectHead('example.org:443')}]}})
      const neighbourMs = performance.now() - started - pingMs
      expectRefusal(answer, 403, 'host_not_allowed', 'the other sandbox\'s proxy')
      expect(pingMs, 'the API answered within').to.be.below(2000)
      expect(neighbourMs, 'the other sandbox\'s proxy answered within').to.be.below(5000)

      const ran = await flood
      expect(ran.exit_code, ran.stderr).to.equal(0)
      const counts = JSON.parse(ran.stdout) as {opened: number; stillOpen: number; closedByProxy: number}
      if (backend === 'gvisor') {
        // A burst this size on a loaded machine can also see a few connections refused at connect inside
        // gVisor (before the proxy sees them): still refused, and the cap holds for the ones that open.
        const {opened, failed} = counts as typeof counts & {failed: number}
        expect(opened + failed).to.equal(3000)
        expect(counts).to.deep.include({stillOpen: CAP, closedByProxy: opened - CAP})
      } else {
        expect(counts).to.deep.include({opened: 3000, stillOpen: CAP, closedByProxy: 3000 - CAP})
      }
      const noted = await limitLines()
      expect(noted, JSON.stringify(noted)).to.have.length(1)
      expect(noted[0]!.error).to.include(`limit of ${CAP} open connections`)
    })
  })
}

/** The processes `pids` and every process below them. */
async function withDescendants(pids: number[]): Promise<number[]> {
  const found = new Set<number>()
  const visit = async (pid: number): Promise<void> => {
    if (found.has(pid)) return
    found.add(pid)
    for (const task of await readdir(`/proc/${pid}/task`).catch(() => [])) {
      const children = await readFile(`/proc/${pid}/task/${task}/children`, 'utf8').catch(() => '')
      for (const child of children.split(' ').filter(Boolean)) await visit(Number(child))
    }
  }
  for (const pid of pids) await visit(pid)
  return [...found]
}
