import {execa} from 'execa'
import {createHash} from 'node:crypto'
import {lstat, mkdir, readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {GUEST_NSINIT} from '../../src/sandbox/backends/gvisor/guest-bin.js'
import {RUN_ROOT} from '../../src/sandbox/backends/gvisor/provision.js'
import {PROJECT_ROOT} from '../helpers/cli.js'

const PRIVATE_MOUNTS = fileURLToPath(new URL('private-mounts.ts', import.meta.url))
const SYSCALL_PROBE = fileURLToPath(new URL('syscall-probe.c', import.meta.url))
const FD_TAKEOVER = fileURLToPath(new URL('fd-takeover.c', import.meta.url))

/** What the seccomp filter answers (syscall-probe.c): refused with EPERM, unavailable (ENOSYS), other ABIs killed. */
export const FILTERED: Record<string, string> = {
  unshare_user: 'EPERM',
  unshare_user_high_bits: 'EPERM',
  unshare_nothing: 'ok',
  clone_user: 'EPERM',
  clone_plain: 'ok',
  clone3: 'ENOSYS',
  keyctl: 'EPERM',
  add_key: 'EPERM',
  request_key: 'EPERM',
  bpf: 'EPERM',
  perf_event_open: 'EPERM',
  userfaultfd: 'EPERM',
  io_uring_setup: 'ENOSYS',
  kexec_load: 'EPERM',
  init_module: 'EPERM',
  finit_module: 'EPERM',
  delete_module: 'EPERM',
  mount: 'EPERM',
  setns: 'EPERM',
  syslog: 'EPERM',
  ioctl_tiocsti: 'EPERM',
  ioctl_tiocsti_high_bits: 'EPERM',
  ioctl_tioclinux: 'EPERM',
  ioctl_plain: 'EBADF',
  getpid: 'ok',
  ...(process.arch === 'x64' ? {x32_getpid: 'killed:SYS', i386_getpid: 'killed:SYS'} : {}),
}

/** The token every redaction test plants: it must never show up inside a sandbox. */
export const TOKEN = 'ghp_cleanroomTestToken0123456789'

export const git = (cwd: string, ...args: string[]) =>
  execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', '-c', 'protocol.file.allow=always', ...args], {cwd})

async function files(root: string, entries: Record<string, string>): Promise<void> {
  for (const [path, text] of Object.entries(entries)) {
    await mkdir(join(root, path, '..'), {recursive: true})
    await writeFile(join(root, path), text)
  }
}

/**
 * A repository with secrets in every place git can be told to ignore them: its own
 * .gitignore, a nested repository's, a submodule's .git/info/exclude, and a
 * .git/config with a token in a remote URL, a credential section and an extra header.
 * The files that must stay visible are `visible-*`.
 */
export async function repositoryWithSecrets(dir: string): Promise<string> {
  const repo = join(dir, 'workspace')
  const library = join(dir, 'library')
  await files(library, {'lib.txt': 'library\n', '.gitignore': '*.log\n'})
  await git(dir, 'init', '-q', library)
  await git(library, 'add', '.')
  await git(library, 'commit', '-q', '-m', 'library')

  await files(repo, {'.gitignore': '*.secret\n', 'top.secret': 'TOP\n', 'visible-top.txt': 'v\n'})
  await git(dir, 'init', '-q', repo)
  await git(repo, 'add', '.gitignore', 'visible-top.txt')
  await git(repo, 'commit', '-q', '-m', 'first')
  await git(repo, 'submodule', 'add', '-q', library, 'sub')
  await git(repo, 'commit', '-q', '-m', 'submodule')
  // The submodule ignores sub.env through its own info/exclude, which lives in the outer .git/modules.
  await writeFile(join(repo, '.git', 'modules', 'sub', 'info', 'exclude'), 'sub.env\n')
  await files(repo, {'sub/sub.env': 'SUB\n', 'sub/deep.log': 'log\n', 'sub/visible-sub.txt': 'v\n'})

  await files(repo, {'nested/.gitignore': 'nested.env\nbuild/\n', 'nested/nested.env': 'NESTED\n', 'nested/build/out.bin': 'x', 'nested/visible-nested.txt': 'v\n'})
  await git(repo, 'init', '-q', 'nested')
  await files(repo, {'nested/inner/.gitignore': 'inner.env\n', 'nested/inner/inner.env': 'INNER\n'})
  await git(join(repo, 'nested'), 'init', '-q', 'inner')

  await git(repo, 'remote', 'add', 'origin', `https://x-access-token:${TOKEN}@github.com/acme/app.git`)
  await git(repo, 'config', 'credential.helper', `store --file=/tmp/${TOKEN}`)
  await git(repo, 'config', 'http.https://github.com/.extraheader', `AUTHORIZATION: basic ${TOKEN}`)
  return repo
}

/** Compiles syscall-probe.c into `dir` (gcc is one of the packages the tests need: .ci/run installs it). */
export async function buildSyscallProbe(dir: string): Promise<string> {
  const binary = join(dir, 'syscall-probe')
  await execa('cc', ['-O2', '-o', binary, SYSCALL_PROBE]).catch((error: unknown) => {
    throw new Error(`could not compile the syscall probe (the boundary tests need a C compiler: apt-get install -y gcc libc6-dev): ${String(error)}`)
  })
  return binary
}

/** Compiles fd-takeover.c into `dir`. */
export async function buildFdTakeover(dir: string): Promise<string> {
  const binary = join(dir, 'fd-takeover')
  await execa('cc', ['-O2', '-o', binary, FD_TAKEOVER]).catch((error: unknown) => {
    throw new Error(`could not compile the fd takeover probe (the boundary tests need a C compiler: apt-get install -y gcc libc6-dev): ${String(error)}`)
  })
  return binary
}

/**
 * Runs a mode of private-mounts.ts in a mount namespace of its own, so what it binds
 * and renames stays there; returns its JSON output.
 */
export async function inPrivateMounts<T>(...args: string[]): Promise<T> {
  const result = await execa('unshare', ['--mount', '--propagation', 'private', '--', process.execPath, '--import', 'tsx', PRIVATE_MOUNTS, ...args], {
    cwd: PROJECT_ROOT,
    reject: false,
  })
  if (result.exitCode !== 0) throw new Error(`private-mounts.ts ${args[0]} failed (exit ${result.exitCode}): ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

/** A copy of the host's /etc to stand in for it (in a root-only temp dir, removed with it). */
export async function copyOfEtc(dir: string): Promise<string> {
  const copy = join(dir, 'etc')
  await execa('cp', ['-a', '/etc', copy])
  return copy
}

/** What a workload may try on the copy of nsinit every gVisor sandbox binds at /run/cleanroom/bin (none of it may work). */
export const VANDALIZE_GUEST_BIN =
  'echo x >> /run/cleanroom/bin/cleanroom-nsinit; true > /run/cleanroom/bin/cleanroom-nsinit; chmod 777 /run/cleanroom/bin /run/cleanroom/bin/cleanroom-nsinit; ' +
  'touch /run/cleanroom/bin/x; mv /run/cleanroom/bin/cleanroom-nsinit /run/cleanroom/bin/y; rm -f /run/cleanroom/bin/cleanroom-nsinit'

/**
 * What is wrong with the host's shared copies of nsinit (guest-bin.ts): each
 * `<RUN_ROOT>/bin-<digest>` must hold that one program, whose sha256 its name begins,
 * both root's and writable by root alone. Empty when every copy is as made.
 */
export async function sharedGuestBinProblems(): Promise<string[]> {
  const problems: string[] = []
  const dirs = (await readdir(RUN_ROOT).catch(() => [] as string[])).filter((name) => name.startsWith('bin-'))
  for (const name of dirs) {
    const dir = join(RUN_ROOT, name)
    const entries = await readdir(dir)
    if (entries.join() !== GUEST_NSINIT) problems.push(`${dir} holds ${entries.join(', ') || 'nothing'}`)
    const program = join(dir, GUEST_NSINIT)
    for (const path of [dir, program]) {
      const stats = await lstat(path).catch(() => undefined)
      if (!stats || stats.uid !== 0 || (stats.mode & 0o022) !== 0) problems.push(`${path}: ${stats ? `uid ${stats.uid}, mode ${(stats.mode & 0o7777).toString(8)}` : 'missing'}`)
    }
    const digest = createHash('sha256').update(await readFile(program).catch(() => Buffer.alloc(0))).digest('hex')
    if (name !== `bin-${digest.slice(0, 32)}`) problems.push(`${program} is not the program its dir is named for`)
  }
  return problems
}
