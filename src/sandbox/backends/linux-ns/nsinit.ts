import type {ReadOnlyMount} from '../../backend.js'
import {SANDBOX_HOSTNAME, SANDBOX_PATH, SANDBOX_USER, STATE_LAYOUT, WORKSPACE, type RootfsMount} from '../../layout.js'

/** The argv contract of nsinit.c (see the comment at its top), and of the bwrap it execs. */

/** The exit status nsinit uses for its own setup failures, with a `nsinit: ` line on stderr. */
export const NSINIT_SETUP_FAILED = 125

/** The fds the sandbox's init is given by the daemon: bwrap's JSON status, and the "ready" line. */
export const STATUS_FD = 3
export const READY_FD = 4
/** Where nsinit puts the seccomp program for bwrap; every other fd above 2 is closed. */
const SECCOMP_FD = 5
/** Where nsinit puts a copy of itself for an image sandbox's held command (nsinit --self-fd). */
const SELF_FD = 6

export interface CreatePlan {
  stateDir: string
  /** The overlay's lower layer: the workspace source, or an empty dir. */
  lower: string
  /** Root daemon: the sandbox's host uid (= gid). Absent: userns mode. */
  hostUid?: number
  /** A file of NUL-separated paths (relative to `lower`) to hide. */
  whiteoutFile?: string
  /** The redacted .git/config the sandbox sees instead of the workspace's own. */
  gitConfig?: string
  /** Where nsinit binds the state dir for bwrap. */
  stateView: string
  /** The sandbox's cgroup directories, joined before anything starts. */
  cgroupDirs?: string[]
  bwrap: string
  rootfs: RootfsMount[]
  /** Host directories shown read-only in the sandbox (nsinit --ro-bind, then bwrap --ro-bind from the state view). */
  readOnlyMounts?: readonly ReadOnlyMount[]
  /** An image sandbox: the image's root filesystem (nsinit --rootfs) and who the workload is inside. */
  image?: {rootfs: string; uid: number; gid: number}
}

/** `nsinit create … -- bwrap … sh -c <hold>`: the argv that becomes the sandbox's init. */
export function createArgv(plan: CreatePlan): string[] {
  const argv = ['create', '--repo', plan.lower, '--state', plan.stateDir, '--bind-state', plan.stateView, '--etc']
  argv.push('--keep-fd', String(STATUS_FD), '--keep-fd', String(READY_FD), '--seccomp-fd', String(SECCOMP_FD))
  if (plan.hostUid !== undefined) argv.push('--uid', String(plan.hostUid), '--gid', String(plan.hostUid))
  if (plan.whiteoutFile !== undefined) argv.push('--whiteout-file', plan.whiteoutFile)
  if (plan.gitConfig !== undefined) argv.push('--git-config', plan.gitConfig)
  if (plan.image) argv.push('--rootfs', plan.image.rootfs, '--self-fd', String(SELF_FD))
  const extra = readOnlyMountPlan(plan.readOnlyMounts, plan.stateView)
  argv.push(...extra.args)
  return [...argv, ...cgroupArgs(plan.cgroupDirs), '--', ...bwrapArgv(plan, [...plan.rootfs, ...extra.rootfs])]
}

/**
 * Host directories shown read-only in a sandbox: nsinit binds each at `<state>/ro-<k>`
 * (`args`), where the sandbox's own uid reaches it whatever the directories above
 * the source allow, and the sandbox mounts it from there (`rootfs`).
 */
export function readOnlyMountPlan(mounts: readonly ReadOnlyMount[] | undefined, stateView: string): {args: string[]; rootfs: RootfsMount[]} {
  const named = (mounts ?? []).map((mount, k) => ({...mount, name: `${STATE_LAYOUT.readOnlyMountPrefix}${k}`}))
  return {
    args: named.flatMap((mount) => ['--ro-bind', mount.source, mount.name]),
    rootfs: named.map((mount): RootfsMount => ({kind: 'ro-bind', source: `${stateView}/${mount.name}`, target: mount.target})),
  }
}

function bwrapArgv(plan: CreatePlan, rootfs: RootfsMount[]): string[] {
  const argv = [
    plan.bwrap,
    '--unshare-all',
    '--uid', String(plan.image?.uid ?? SANDBOX_USER.uid),
    '--gid', String(plan.image?.gid ?? SANDBOX_USER.gid),
    '--cap-drop', 'ALL',
    '--hostname', SANDBOX_HOSTNAME,
    '--seccomp', String(SECCOMP_FD),
  ]
  for (const mount of rootfs) argv.push(...mountArgs(mount))
  // bwrap's own root is a tmpfs the sandbox could fill: only the mounts above are writable. An image's root is the sandbox's own overlay.
  if (!plan.image) argv.push('--remount-ro', '/')
  argv.push(
    '--chdir', WORKSPACE,
    '--clearenv',
    '--setenv', 'PATH', SANDBOX_PATH,
    '--setenv', 'HOME', SANDBOX_USER.home,
    '--json-status-fd', String(STATUS_FD),
    // bwrap's status line comes before the sandbox is set up: only the held command itself
    // can say it runs. Its fds to the daemon are closed so no exec can reach them. An image
    // may have no shell: there nsinit itself, static, is the held command.
    ...(plan.image
      ? [`/proc/self/fd/${SELF_FD}`, 'hold', String(READY_FD)]
      : ['/bin/sh', '-c', `echo ready >&${READY_FD}; exec ${STATUS_FD}>&- ${READY_FD}>&- ${SECCOMP_FD}<&-; exec sleep infinity`]),
  )
  return argv
}

function mountArgs(mount: RootfsMount): string[] {
  switch (mount.kind) {
    case 'ro-bind':
    case 'bind': {
      return [`--${mount.kind}`, mount.source, mount.target]
    }
    case 'symlink': {
      return ['--symlink', mount.linkTarget, mount.target]
    }
    case 'proc':
    case 'dev': {
      return [`--${mount.kind}`, mount.target]
    }
  }
}

/** Where a sandbox's init is, and who may enter it. */
export interface ExecTarget {
  initPid: number
  initStartTime: number
  mntNs: number
  hostUid?: number
  /** The sandbox's cgroup directories: every exec joins them first. */
  cgroupDirs?: string[]
  /** Who the workload is inside; default the sandbox user (an image's User may say otherwise). */
  uid?: number
  gid?: number
}

/** `nsinit exec … -- argv`: runs argv in the sandbox as its workload's user. */
export function execArgv(target: ExecTarget, cwd: string, command: string[]): string[] {
  const argv = ['exec', '--pid', String(target.initPid), '--start-time', String(target.initStartTime), '--mntns', String(target.mntNs)]
  if (target.hostUid !== undefined) argv.push('--host-uid', String(target.hostUid), '--host-gid', String(target.hostUid))
  argv.push('--uid', String(target.uid ?? SANDBOX_USER.uid), '--gid', String(target.gid ?? SANDBOX_USER.gid), '--cwd', cwd)
  return [...argv, ...cgroupArgs(target.cgroupDirs), '--', ...command]
}

function cgroupArgs(dirs: string[] | undefined): string[] {
  return (dirs ?? []).flatMap((dir) => ['--cgroup', dir])
}

/** `nsinit listen …`: a socket listening on 127.0.0.1:port in the sandbox's network namespace, sent to the parent over Node IPC. */
export function listenArgv(target: ExecTarget, port: number): string[] {
  const argv = ['listen', '--pid', String(target.initPid), '--start-time', String(target.initStartTime), '--port', String(port)]
  if (target.hostUid !== undefined) argv.push('--host-uid', String(target.hostUid), '--host-gid', String(target.hostUid))
  return argv
}
