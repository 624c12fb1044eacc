import {lstat, mkdir, readlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {ExecRequest} from './types.js'

/*
 * What a sandbox looks like from inside, whatever its backend: who runs in it, its
 * root filesystem, the generated /etc files, the environment of its processes, and
 * the names the backends use in its state dir.
 */

/** The unprivileged user every sandboxed process runs as. */
export const SANDBOX_USER = {name: 'cleanroom', uid: 1000, gid: 1000, home: '/home/cleanroom', shell: '/bin/sh'} as const
export const SANDBOX_HOSTNAME = 'cleanroom'
export const SANDBOX_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
export const WORKSPACE = '/workspace'

/** Names in the state dir (created by nsinit.c, or by the daemon for `etc`, `whiteouts` and `gitConfig`). */
export const STATE_LAYOUT = {
  workspace: 'merged',
  home: 'home',
  tmp: 'tmp',
  /** The generated /etc files; `etcMerged` is them over the host's /etc (nsinit --etc). */
  etc: 'etc',
  etcMerged: 'etc-merged',
  /** The redacted copy of the workspace's .git/config the sandbox sees (nsinit --git-config). */
  gitConfig: 'git-config',
  emptyWorkspace: 'empty',
  /** An image sandbox's root: the image under `rootfsUpper`, the sandbox's writes to it (nsinit --rootfs). */
  rootfs: 'rootfs',
  rootfsUpper: 'rootfs-upper',
  whiteouts: 'whiteouts',
  log: 'sandbox.log',
  /** Mount points of the read-only mounts (nsinit --ro-bind): `ro-0`, `ro-1`, … */
  readOnlyMountPrefix: 'ro-',
} as const

/** One mount of the sandbox's root filesystem, in the order bwrap applies them. */
export type RootfsMount =
  | {kind: 'ro-bind' | 'bind'; source: string; target: string}
  | {kind: 'symlink'; linkTarget: string; target: string}
  | {kind: 'proc' | 'dev'; target: string}

/**
 * Files laid over the host's (or the image's) /etc: who the sandbox user is, and no
 * name service. `accounts`: an image sandbox's passwd and group (the image's own, plus
 * its workload's account).
 */
export function generatedEtcFiles(accounts?: {passwd: string; group: string}): Record<string, string> {
  const user = SANDBOX_USER
  return {
    passwd:
      accounts?.passwd ??
      [
        'root:x:0:0:root:/root:/bin/sh',
        `${user.name}:x:${user.uid}:${user.gid}:${user.name}:${user.home}:${user.shell}`,
        'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin',
        '',
      ].join('\n'),
    group: accounts?.group ?? ['root:x:0:', `${user.name}:x:${user.gid}:`, 'nogroup:x:65534:', ''].join('\n'),
    hosts: [`127.0.0.1\tlocalhost ${SANDBOX_HOSTNAME}`, '::1\tlocalhost ip6-localhost ip6-loopback', ''].join('\n'),
    hostname: `${SANDBOX_HOSTNAME}\n`,
    'resolv.conf': '# cleanroom: this sandbox has no DNS resolver; network access goes through the egress proxy only.\n',
  }
}

export async function writeGeneratedEtc(stateDir: string, accounts?: {passwd: string; group: string}): Promise<void> {
  const dir = join(stateDir, STATE_LAYOUT.etc)
  await mkdir(dir, {mode: 0o755})
  await Promise.all(Object.entries(generatedEtcFiles(accounts)).map(([name, text]) => writeFile(join(dir, name), text, {mode: 0o644})))
}

/**
 * The sandbox's root filesystem: the host's /usr and /opt read-only, the top-level
 * /bin, /lib* and /sbin as the host has them (merged-usr symlinks or directories),
 * /etc as the generated files over the host's /etc (an overlay nsinit mounts: no
 * mount point inside /etc, so nothing the host renames there can uncover the host's
 * passwd or hosts), fresh /proc and /dev, and the per-sandbox /tmp, /workspace and
 * home from the state dir, reached through `stateView`.
 */
export async function sandboxRootfs(stateView: string): Promise<RootfsMount[]> {
  const topLevel = ['bin', 'sbin', 'lib', 'lib32', 'lib64', 'libx32'].map((name) => `/${name}`)
  // Looked up at once; the mounts keep their order.
  const [top, opt] = await Promise.all([Promise.all(topLevel.map(async (path) => ({path, entry: await hostEntry(path)}))), hostEntry('/opt')])
  const links = new Map(await Promise.all(top.filter(({entry}) => entry === 'symlink').map(async ({path}) => [path, await readlink(path)] as const)))

  const mounts: RootfsMount[] = [{kind: 'ro-bind', source: '/usr', target: '/usr'}]
  for (const {path, entry} of top) {
    if (entry === 'directory') mounts.push({kind: 'ro-bind', source: path, target: path})
    else if (entry === 'symlink') mounts.push({kind: 'symlink', linkTarget: links.get(path)!, target: path})
  }
  mounts.push({kind: 'ro-bind', source: `${stateView}/${STATE_LAYOUT.etcMerged}`, target: '/etc'})
  if (opt === 'directory') mounts.push({kind: 'ro-bind', source: '/opt', target: '/opt'})
  return [...mounts, ...sandboxOwnMounts(stateView)]
}

/**
 * An image sandbox's root filesystem: the image under the sandbox's own upper layer
 * (an overlay nsinit mounts), writable; /etc as the generated files over the image's,
 * read-only; then the same /proc, /dev, /tmp, /workspace and home as on the host's.
 */
export function imageRootfs(stateView: string): RootfsMount[] {
  return [
    {kind: 'bind', source: `${stateView}/${STATE_LAYOUT.rootfs}`, target: '/'},
    {kind: 'ro-bind', source: `${stateView}/${STATE_LAYOUT.etcMerged}`, target: '/etc'},
    ...sandboxOwnMounts(stateView),
  ]
}

/** What every sandbox has of its own, whatever its root: fresh /proc and /dev, and /tmp, /workspace and home from the state dir. */
function sandboxOwnMounts(stateView: string): RootfsMount[] {
  return [
    {kind: 'proc', target: '/proc'},
    {kind: 'dev', target: '/dev'},
    {kind: 'bind', source: `${stateView}/${STATE_LAYOUT.tmp}`, target: '/tmp'},
    {kind: 'bind', source: `${stateView}/${STATE_LAYOUT.workspace}`, target: WORKSPACE},
    {kind: 'bind', source: `${stateView}/${STATE_LAYOUT.home}`, target: SANDBOX_USER.home},
  ]
}

async function hostEntry(path: string): Promise<'directory' | 'symlink' | undefined> {
  const stats = await lstat(path).catch(() => undefined)
  if (!stats) return undefined
  if (stats.isSymbolicLink()) return 'symlink'
  return stats.isDirectory() ? 'directory' : undefined
}

/**
 * The workload's environment: a login-like base, an image's own Env (and user) over it, TERM
 * on a terminal, then the request's own (which wins: the daemon's proxy settings are in it).
 */
export function workloadEnv(request: ExecRequest, image?: {user: string; env: Record<string, string>}): Record<string, string> {
  const user = image?.user ?? SANDBOX_USER.name
  return {
    PATH: SANDBOX_PATH,
    HOME: SANDBOX_USER.home,
    USER: user,
    LOGNAME: user,
    SHELL: SANDBOX_USER.shell,
    LANG: 'C.UTF-8',
    ...image?.env,
    ...(request.tty ? {TERM: request.env.TERM ?? 'xterm-256color'} : {}),
    ...request.env,
  }
}
