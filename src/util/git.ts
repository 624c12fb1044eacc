import {spawn} from 'node:child_process'
import {stat} from 'node:fs/promises'

/** A uid and gid to run git as. */
export interface GitUser {
  uid: number
  gid: number
}

export interface GitResult {
  code: number | null
  stdout: Buffer
  stderr: string
}

const GIT_TIMEOUT_MS = 120_000

/**
 * Whose git configuration applies besides the repository's own: none (the
 * default: a repository a sandbox wrote to, read by the host) or the user's
 * global and system config, for reading the user's own repository as git
 * would (its global excludes), with that user's HOME and XDG_CONFIG_HOME.
 */
export type GitConfigScope = {scope: 'repository'} | {scope: 'user'; home?: string; xdgConfigHome?: string}

/**
 * Settings that keep git from running anything but itself: no fsmonitor, no
 * hooks, no pager, no external diff, no credential or askpass helper, no
 * transport. The environment drops LFS smudging, replace refs and lazy fetches
 * of missing objects, and (unless GitConfigScope says otherwise) the user's and
 * the system's config and attributes.
 * Commands that take pathspecs from a sandbox pass --literal-pathspecs.
 */
const HARDENING = [
  '-c', 'core.fsmonitor=false',
  '-c', 'core.hooksPath=/dev/null',
  '-c', 'core.pager=cat',
  '-c', 'diff.external=',
  '-c', 'credential.helper=',
  '-c', 'core.askPass=',
  '-c', 'protocol.allow=never',
]

export interface GitOptions {
  input?: string
  /** Run as this uid and gid. */
  user?: GitUser
  /** Default: the repository's own config only. */
  config?: GitConfigScope
  timeoutMs?: number
}

/**
 * Runs git in `repo`, the one place cleanroom spawns it: with the hardening
 * above, and as `user` when given (a root daemon reads a user's repository as
 * its owner: git refuses another owner's repository, and its config must never
 * run anything as root).
 */
export function runGit(repo: string, args: readonly string[], options: GitOptions = {}): Promise<GitResult> {
  const config = options.config ?? {scope: 'repository'}
  const child = spawn('git', [...HARDENING, ...args], {
    cwd: repo,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C',
      LC_ALL: 'C',
      ...(config.scope === 'user'
        ? {...(config.home ? {HOME: config.home} : {}), ...(config.xdgConfigHome ? {XDG_CONFIG_HOME: config.xdgConfigHome} : {})}
        : {HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1', GIT_CONFIG_GLOBAL: '/dev/null', GIT_ATTR_NOSYSTEM: '1'}),
      GIT_OPTIONAL_LOCKS: '0',
      GIT_TERMINAL_PROMPT: '0',
      GIT_LFS_SKIP_SMUDGE: '1',
      GIT_NO_REPLACE_OBJECTS: '1',
      GIT_NO_LAZY_FETCH: '1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: options.timeoutMs ?? GIT_TIMEOUT_MS,
    ...(options.user ? {uid: options.user.uid, gid: options.user.gid} : {}),
  })
  const stdout: Buffer[] = []
  let stderr = ''
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString('utf8')
  })
  // A git that exits early must not crash the daemon with EPIPE.
  child.stdin.on('error', () => undefined)
  child.stdin.end(options.input)
  return new Promise((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stdout: Buffer.concat(stdout), stderr}))
  })
}

/** The owner of `dir` when this process is root and `dir` belongs to someone else: git runs there as them. */
export async function ownerToRunAs(dir: string): Promise<GitUser | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const stats = await stat(dir)
  return stats.uid === 0 ? undefined : {uid: stats.uid, gid: stats.gid}
}
