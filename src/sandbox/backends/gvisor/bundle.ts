import {mkdir, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {type RootfsMount, SANDBOX_HOSTNAME, SANDBOX_PATH} from '../../layout.js'
import {EXEC_SOCKET} from './exec-server.js'

/** Names in the state dir the gvisor backend adds to the shared ones (STATE_LAYOUT). */
export const GVISOR_STATE = {
  /** The OCI bundle: config.json. */
  bundle: 'bundle',
  /** The sandbox's root: read-only, holding only mount points and the merged-usr symlinks. */
  rootfs: 'rootfs',
} as const

/** Where the sandbox sees cleanroom's own parts. */
export const GUEST = {
  bin: '/run/cleanroom/bin',
  nsinit: '/run/cleanroom/bin/cleanroom-nsinit',
  /** The daemon's egress sockets (`<port>.sock`), reachable by the sandbox's root only. */
  egress: '/run/cleanroom/egress',
  /** The daemon's exec server socket (exec-server.ts), reachable by the workload's user (and the server, which is it). */
  exec: '/run/cleanroom/exec',
} as const

/** Where the forwarder for 127.0.0.1:`port` inside reaches the daemon: its socket for that port in the run dir's egress dir. */
export function guestEgressSocket(port: number): string {
  return `${GUEST.egress}/${port}.sock`
}

/** The descriptors every process of a sandbox may hold (the daemon's own limit, not the host's). */
const OPEN_FILES = 65_536

export interface BundlePlan {
  /** The state dir as runsc and the gofer see it: nsinit binds it there (--bind-state). */
  stateView: string
  /** The host dir with the copy of cleanroom-nsinit every sandbox shares, bound read-only at GUEST.bin (guest-bin.ts). */
  guestBin: string
  /** The egress socket directory on the host. */
  egressDir: string
  rootfs: RootfsMount[]
  /** The sandbox's root (its kernel, gofer, init and forwarders) on the host. */
  hostUid: number
  /** The workload's uid and gid on the host: the owner of its files. The sandbox's root's (`hostUid`) when the workload is root inside. */
  filesUid: number
  filesGid: number
  /** Who the workload is inside: the sandbox user (1000:1000), or an image's User. */
  workload: {uid: number; gid: number}
  /** An image sandbox: `/` is the image under the sandbox's upper layer (nsinit --rootfs), at `<state>/rootfs`, writable. */
  imageRoot?: boolean
  /** The tasks the workload may run (RLIMIT_NPROC); undefined or null: no limit. */
  tasks?: number | null
  /** Ports on the sandbox's loopback the init forwards to the daemon's egress sockets from the start. */
  forwardPorts?: readonly number[]
  /** The host dir of the daemon's exec server socket: init then starts the exec server (guest-serve.c). */
  execDir?: string
}

/** What init holds until it has forked the exec server, which needs them to become the workload's user; both drop them all. */
const EXEC_SERVER_CAPABILITIES = ['CAP_SETUID', 'CAP_SETGID', 'CAP_SETPCAP']

/**
 * A process as an OCI spec (and `runsc exec --process`) says it: no capabilities, no_new_privs.
 * `tasks`: RLIMIT_NPROC, which gVisor's kernel enforces per uid inside; set on the init, as
 * `runsc exec` gives each exec the init's limits, not its own spec's.
 */
export function processSpec(options: {uid: number; gid?: number; args: string[]; env: Record<string, string>; tasks?: number | null; capabilities?: string[]}): Record<string, unknown> {
  const none: string[] = []
  const held = options.capabilities ?? none
  return {
    user: {uid: options.uid, gid: options.gid ?? options.uid, additionalGids: []},
    args: options.args,
    env: Object.entries(options.env).map(([name, value]) => `${name}=${value}`),
    cwd: '/',
    noNewPrivileges: true,
    capabilities: {bounding: held, effective: held, inheritable: none, permitted: held, ambient: none},
    rlimits: [
      {type: 'RLIMIT_NOFILE', hard: OPEN_FILES, soft: OPEN_FILES},
      ...(options.tasks === undefined || options.tasks === null ? [] : [{type: 'RLIMIT_NPROC', hard: options.tasks, soft: options.tasks}]),
    ],
  }
}

/**
 * Writes `<state>/bundle/config.json` and the sandbox's root dir.
 * The spec: the init is `nsinit init` as the sandbox's root, forwarding `forwardPorts`
 * (see listen.ts) before it says it runs; the root filesystem is
 * the shared layout (the host's /usr read-only, the generated /etc, /workspace, home
 * and /tmp from the state dir), or an image's under the sandbox's own upper layer;
 * new pid, network (loopback only), ipc, uts, mount and user namespaces, the user
 * namespace mapping the sandbox's root to `hostUid` and the workload to `filesUid`,
 * and nothing else: every other host uid shows as nobody.
 */
export async function writeBundle(state: string, plan: BundlePlan): Promise<void> {
  const root = join(state, GVISOR_STATE.rootfs)
  await Promise.all([
    mkdir(join(state, GVISOR_STATE.bundle), {mode: 0o755}),
    // nsinit mounts an image's root there.
    plan.imageRoot ? Promise.resolve() : mkdir(root, {mode: 0o755}),
  ])
  const mounts: Record<string, unknown>[] = []
  const mountPoints: string[] = [GUEST.bin, GUEST.egress, ...(plan.execDir === undefined ? [] : [GUEST.exec])]
  const links: Array<{linkTarget: string; target: string}> = []
  for (const mount of plan.rootfs) {
    // An image's root is the bundle's root itself.
    if (mount.target === '/') continue
    if (mount.kind === 'symlink') {
      links.push(mount)
      continue
    }
    mountPoints.push(mount.target)
    mounts.push(ociMount(mount))
  }
  await Promise.all(links.map((link) => symlink(link.linkTarget, join(root, link.target))))
  // The read-only root holds its mount points; in an image's writable root gVisor makes the missing ones, in the sandbox's upper layer.
  if (!plan.imageRoot) await Promise.all(mountPoints.map((point) => mkdir(join(root, point), {recursive: true, mode: 0o755})))
  mounts.push(
    {destination: GUEST.bin, type: 'bind', source: plan.guestBin, options: ['rbind', 'ro']},
    {destination: GUEST.egress, type: 'bind', source: plan.egressDir, options: ['rbind', 'ro']},
    ...(plan.execDir === undefined ? [] : [{destination: GUEST.exec, type: 'bind', source: plan.execDir, options: ['rbind', 'ro']}]),
  )
  // A workload that is root inside is the sandbox's root: one id, and its files are the root's.
  const ids = (workload: number, filesId: number) => [{containerID: 0, hostID: plan.hostUid, size: 1}, ...(workload === 0 ? [] : [{containerID: workload, hostID: filesId, size: 1}])]
  const forwards = (plan.forwardPorts ?? []).flatMap((port) => ['--forward', String(port), guestEgressSocket(port)])
  const server = plan.execDir === undefined ? [] : ['--exec-server', `${GUEST.exec}/${EXEC_SOCKET}`, String(plan.workload.uid), String(plan.workload.gid)]
  const spec = {
    ociVersion: '1.0.2',
    process: processSpec({uid: 0, args: [GUEST.nsinit, 'init', ...forwards, ...server], env: {PATH: SANDBOX_PATH}, tasks: plan.tasks, ...(server.length > 0 ? {capabilities: EXEC_SERVER_CAPABILITIES} : {})}),
    root: {path: `${plan.stateView}/${GVISOR_STATE.rootfs}`, readonly: !plan.imageRoot},
    hostname: SANDBOX_HOSTNAME,
    mounts,
    linux: {
      namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'user'].map((type) => ({type})),
      uidMappings: ids(plan.workload.uid, plan.filesUid),
      gidMappings: ids(plan.workload.gid, plan.filesGid),
    },
  }
  await writeFile(join(state, GVISOR_STATE.bundle, 'config.json'), `${JSON.stringify(spec, null, 2)}\n`, {mode: 0o600})
}

function ociMount(mount: Exclude<RootfsMount, {kind: 'symlink'}>): Record<string, unknown> {
  switch (mount.kind) {
    case 'ro-bind': {
      return {destination: mount.target, type: 'bind', source: mount.source, options: ['rbind', 'ro']}
    }
    case 'bind': {
      return {destination: mount.target, type: 'bind', source: mount.source, options: ['rbind', 'rw']}
    }
    case 'proc': {
      return {destination: mount.target, type: 'proc', source: 'proc'}
    }
    case 'dev': {
      // gVisor's own /dev: null, zero, full, random, urandom, tty, ptmx and pts.
      return {destination: mount.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755']}
    }
  }
}
