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
 * Settings that keep git from running anything but itself: no fsmonitor, no
 * hooks, no pager, no external diff, no credential or askpass helper, no
 * transport. The environment drops the user's and the system's config and
 * attributes, LFS smudging, replace refs and lazy fetches of missing objects.
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

/**
 * Runs git in `repo` for the workspace code, the one place it is spawned here:
 * with the hardening above, and as `user` when given
 * (a root daemon reads a user's repository as its owner: git refuses another
 * owner's repository, and its config must never run anything as root).
 */
export function runGit(repo: string, args: readonly string[], options: {input?: string; user?: GitUser} = {}): Promise<GitResult> {
  const child = spawn('git', [...HARDENING, ...args], {
    cwd: repo,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C',
      LC_ALL: 'C',
      HOME: '/nonexistent',
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_ATTR_NOSYSTEM: '1',
      GIT_OPTIONAL_LOCKS: '0',
      GIT_TERMINAL_PROMPT: '0',
      GIT_LFS_SKIP_SMUDGE: '1',
      GIT_NO_REPLACE_OBJECTS: '1',
      GIT_NO_LAZY_FETCH: '1',
    },
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: GIT_TIMEOUT_MS,
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
