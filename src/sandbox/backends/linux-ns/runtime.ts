import {readFileSync} from 'node:fs'
import {open, readFile, stat} from 'node:fs/promises'

import {CleanroomError} from '../../../errors/index.js'
import {pollUntil} from '../../../util/poll.js'
import type {BackendRuntime} from '../../backend.js'
import type {SandboxResources} from '../../resources.js'
import {cgroupDirs, type SandboxCgroup} from './cgroups.js'
import type {ExecTarget} from './nsinit.js'

/** What the daemon records (SandboxRecord.runtime) to reach a linux-ns sandbox again, also after a restart. */
export interface LinuxNsRuntime {
  /** Host pid of bwrap's init, pid 1 inside the sandbox: it holds the namespaces. */
  init_pid: number
  /** Its start time in clock ticks since boot: with the pid, unique until reboot. */
  init_start_time: number
  /** Inode of its mount namespace. */
  mnt_ns: number
  /** Host pid and start time of the outer bwrap, which waits for the init outside its pid namespace. */
  bwrap_pid: number
  bwrap_start_time: number
  /** The host uid (= gid) every process of the sandbox runs as; only with a root daemon. */
  host_uid?: number
  state_dir: string
  /** True with a non-root daemon: the overlay lives in an unprivileged user namespace. */
  userns_mode: boolean
  /** The sandbox's cgroup, when its limits are enforced. */
  cgroup?: SandboxCgroup
  /** The limits in force (null: none could be set). */
  resources?: SandboxResources | null
  /** An image sandbox: who its workload is, and what the image sets for every command. */
  image?: ImageWorkload
}

/** What every exec in an image sandbox runs with (docs/images.md#running-sandboxes-on-an-image). */
export interface ImageWorkload {
  /** The image's config digest. */
  id: string
  /** The workload's ids and name inside the sandbox's user namespace. */
  uid: number
  gid: number
  user: string
  /** The image's Env, under what the daemon and the request set. */
  env: Record<string, string>
  /** The default working directory instead of /workspace (the image's WorkingDir, in a sandbox without a workspace). */
  cwd?: string
}

/** Reads a runtime record back; a malformed one means the sandbox cannot be reached. */
export function parseRuntime(record: BackendRuntime): LinuxNsRuntime {
  const counts = ['init_pid', 'init_start_time', 'mnt_ns', 'bwrap_pid', 'bwrap_start_time'] as const
  const broken =
    counts.some((key) => !isCount(record[key])) ||
    (record.host_uid !== undefined && !isCount(record.host_uid)) ||
    typeof record.state_dir !== 'string' ||
    typeof record.userns_mode !== 'boolean' ||
    (record.cgroup !== undefined && !isCgroup(record.cgroup)) ||
    (record.image !== undefined && !isImageWorkload(record.image))
  if (broken) throw new CleanroomError('sandbox_failed', 'the linux-ns runtime record of this sandbox is incomplete or corrupt')
  return record as unknown as LinuxNsRuntime
}

export function execTarget(runtime: LinuxNsRuntime): ExecTarget {
  return {
    initPid: runtime.init_pid,
    initStartTime: runtime.init_start_time,
    mntNs: runtime.mnt_ns,
    hostUid: runtime.host_uid,
    ...(runtime.cgroup ? {cgroupDirs: cgroupDirs(runtime.cgroup)} : {}),
    ...(runtime.image ? {uid: runtime.image.uid, gid: runtime.image.gid} : {}),
  }
}

/** A process as /proc shows it. */
export interface ProcessFacts {
  /** One letter: R, S, D, Z, T… */
  state: string
  startTime: number
  /** The real uid. */
  uid: number
  /**
   * SIGKILL is pending or the kernel is taking it down (PF_EXITING): it is dead
   * already, though for a pid namespace's init that can last until the namespace is empty.
   */
  dying: boolean
}

const PF_EXITING = 0x4
/** Signal n is bit n-1 of the pending masks in /proc/N/status. */
const SIGKILL_MASK = 1 << 8

export async function processFacts(pid: number): Promise<ProcessFacts | undefined> {
  try {
    const [statLine, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')])
    const stat = parseStat(statLine)
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1]
    if (stat === undefined || uid === undefined) return undefined
    const killed = [/^SigPnd:\s+([0-9a-f]+)$/m, /^ShdPnd:\s+([0-9a-f]+)$/m].some((mask) => (Number.parseInt(mask.exec(status)?.[1]?.slice(-8) ?? '0', 16) & SIGKILL_MASK) !== 0)
    const dying = killed || (stat.flags & PF_EXITING) !== 0
    return {state: stat.state, startTime: stat.startTime, uid: Number(uid), dying}
  } catch {
    return undefined
  }
}

/** Enough of /proc/<pid>/status for its State and Uid lines, which come first. */
const STATUS_HEAD_BYTES = 1024

/**
 * The start of `/proc/<pid>/status`, in one read: sweeps over every process on the
 * machine read this, and readFile would also fstat and read again to find the end.
 * Rejects when the process is gone.
 */
export async function processStatusHead(pid: number | string): Promise<string> {
  const file = await open(`/proc/${pid}/status`, 'r')
  try {
    const {buffer, bytesRead} = await file.read(Buffer.allocUnsafe(STATUS_HEAD_BYTES), 0, STATUS_HEAD_BYTES, 0)
    return buffer.toString('latin1', 0, bytesRead)
  } finally {
    await file.close()
  }
}

/** The state and start time of a process, read now and without waiting (one small file). */
export function processStatSync(pid: number): {state: string; startTime: number} | undefined {
  try {
    const stat = parseStat(readFileSync(`/proc/${pid}/stat`, 'utf8'))
    return stat && {state: stat.state, startTime: stat.startTime}
  } catch {
    return undefined
  }
}

/** State letter, kernel flags and start time from a /proc/<pid>/stat line. */
function parseStat(statLine: string): {state: string; flags: number; startTime: number} | undefined {
  // Fields after the command name, which may itself hold spaces and parentheses.
  const fields = statLine.slice(statLine.lastIndexOf(')') + 2).split(' ')
  if (fields[0] === undefined || fields[19] === undefined) return undefined
  return {state: fields[0], flags: Number(fields[6]), startTime: Number(fields[19])}
}

export async function mountNamespace(pid: number): Promise<number | undefined> {
  return stat(`/proc/${pid}/ns/mnt`).then(
    (stats) => stats.ino,
    () => undefined,
  )
}

/** The process `pid` started at `startTime` still runs (a zombie has finished). */
export async function isRunning(pid: number, startTime: number): Promise<boolean> {
  const facts = await processFacts(pid)
  return facts !== undefined && facts.startTime === startTime && facts.state !== 'Z'
}

/** Waits, at most `timeoutMs`, until none of `processes` runs; false when one still does then. */
export async function goneWithin(processes: ReadonlyArray<{pid: number; startTime: number}>, timeoutMs: number): Promise<boolean> {
  return pollUntil(async () => !(await Promise.all(processes.map(({pid, startTime}) => isRunning(pid, startTime)))).includes(true), timeoutMs)
}

/**
 * The sandbox's init is alive: same pid and start time (never a recycled pid), not a
 * zombie nor killed, running as the sandbox's uid, holding the sandbox's mount namespace.
 */
export async function isSandboxAlive(runtime: LinuxNsRuntime): Promise<boolean> {
  const init = await processFacts(runtime.init_pid)
  if (!init || init.state === 'Z' || init.dying || init.startTime !== runtime.init_start_time) return false
  if (init.uid !== (runtime.host_uid ?? process.getuid?.())) return false
  return (await mountNamespace(runtime.init_pid)) === runtime.mnt_ns
}

/** SIGKILL to `pid` if it is still the process that started at `startTime` (never a recycled pid). */
export async function killIfSame(pid: number, startTime: number): Promise<void> {
  if (!(await isRunning(pid, startTime))) return
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited in between
  }
}

/** A recorded cgroup is well-formed: a cgroup version and absolute directories. */
export function isCgroup(value: unknown): value is SandboxCgroup {
  const cgroup = value as Partial<SandboxCgroup> | null
  if (typeof cgroup !== 'object' || cgroup === null || (cgroup.version !== 1 && cgroup.version !== 2)) return false
  const dirs = cgroup.dirs as Record<string, unknown> | undefined
  return typeof dirs === 'object' && dirs !== null && Object.values(dirs).every((dir) => typeof dir === 'string' && dir.startsWith('/'))
}

/** A recorded image workload is well-formed (the linux-ns and gvisor runtime records hold one). */
export function isImageWorkload(value: unknown): value is ImageWorkload {
  const image = value as Partial<ImageWorkload> | null
  if (typeof image !== 'object' || image === null || typeof image.id !== 'string' || typeof image.user !== 'string') return false
  if (!isCount(image.uid) || !isCount(image.gid) || (image.cwd !== undefined && typeof image.cwd !== 'string')) return false
  return typeof image.env === 'object' && image.env !== null && Object.values(image.env).every((entry) => typeof entry === 'string')
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}
