import {CleanroomError} from '../../../errors/index.js'
import type {BackendRuntime} from '../../backend.js'
import type {SandboxResources} from '../../resources.js'
import type {SandboxCgroup} from '../linux-ns/cgroups.js'
import {type ImageWorkload, isCgroup, isImageWorkload, isRunning, processFacts} from '../linux-ns/runtime.js'

/** What the daemon records (SandboxRecord.runtime) to reach a gvisor sandbox again, also after a restart. */
export interface GvisorRuntime {
  state_dir: string
  /** `/run/cleanroom-gvisor/<id>`: runsc's root for the sandbox, and the egress sockets. */
  run_dir: string
  /** The host uid (= gid) the sandbox's gVisor kernel and gofer run as: the sandbox's root maps to it. */
  host_uid: number
  /** The host uid of the workload's files: the workload (1000, or an image's User) maps to it; `host_uid` when the workload is root inside. */
  files_uid: number
  /**
   * Only in the records of sandboxes started attached, by an earlier cleanroom: their
   * `runsc run` (nsinit became it), which waits for the sandbox. Sandboxes are now
   * started with `runsc run --detach` and have none.
   */
  launcher_pid?: number
  launcher_start_time?: number
  /** runsc-sandbox, the gVisor kernel (Sentry), and runsc-gofer, which serves it the host's files. */
  sandbox_pid: number
  sandbox_start_time: number
  gofer_pid: number
  gofer_start_time: number
  /** The cgroup runsc and everything it started run in, when limits are enforced. */
  cgroup?: SandboxCgroup
  /** The limits in force (null: none could be set). */
  resources?: SandboxResources | null
  /** An image sandbox: who its workload is, and what the image sets for every command. */
  image?: ImageWorkload
}

const COUNTS = ['host_uid', 'files_uid', 'sandbox_pid', 'sandbox_start_time', 'gofer_pid', 'gofer_start_time'] as const
const LAUNCHER = ['launcher_pid', 'launcher_start_time'] as const

/** Reads a runtime record back; a malformed one means the sandbox cannot be reached. */
export function parseRuntime(record: BackendRuntime): GvisorRuntime {
  const broken =
    COUNTS.some((key) => !isCount(record[key])) ||
    LAUNCHER.some((key) => record[key] !== undefined && !isCount(record[key])) ||
    (record.launcher_pid === undefined) !== (record.launcher_start_time === undefined) ||
    typeof record.state_dir !== 'string' ||
    typeof record.run_dir !== 'string' ||
    (record.cgroup !== undefined && !isCgroup(record.cgroup)) ||
    (record.image !== undefined && !isImageWorkload(record.image))
  if (broken) throw new CleanroomError('sandbox_failed', 'the gvisor runtime record of this sandbox is incomplete or corrupt')
  return record as unknown as GvisorRuntime
}

/** The host processes of a sandbox, as pid and start time (never a recycled pid). */
export function sandboxProcesses(runtime: GvisorRuntime): Array<{pid: number; startTime: number}> {
  return [
    {pid: runtime.sandbox_pid, startTime: runtime.sandbox_start_time},
    {pid: runtime.gofer_pid, startTime: runtime.gofer_start_time},
    ...(runtime.launcher_pid === undefined ? [] : [{pid: runtime.launcher_pid, startTime: runtime.launcher_start_time!}]),
  ]
}

/**
 * The sandbox runs: its gVisor kernel (and the launcher an attached start left) are the
 * processes recorded (same pid, start time, not zombies nor killed), and the kernel
 * runs as the sandbox's uid. The kernel ends when the sandbox's init does.
 */
export async function isSandboxAlive(runtime: GvisorRuntime): Promise<boolean> {
  const [kernel, launcherRuns] = await Promise.all([
    processFacts(runtime.sandbox_pid),
    runtime.launcher_pid === undefined ? true : isRunning(runtime.launcher_pid, runtime.launcher_start_time!),
  ])
  if (!kernel || !launcherRuns || kernel.state === 'Z' || kernel.dying || kernel.startTime !== runtime.sandbox_start_time) return false
  return kernel.uid === runtime.host_uid
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}
