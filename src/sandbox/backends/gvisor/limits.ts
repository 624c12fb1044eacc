import type {SandboxLimits} from '../../resources.js'

/**
 * Host tasks of an idle gVisor sandbox: the gVisor kernel's threads, the gofer's and the
 * systrap stubs (and, in sandboxes started attached by an earlier cleanroom, runsc run's). Measured 39-42 with runsc 20240729 (systrap); the kernel starts
 * more threads under load, so this leaves room for them.
 */
export const SANDBOX_HOST_TASKS = 256
/** Host tasks per task inside: systrap gives each process a stub process and each thread a stub thread (measured ~2.3). */
export const HOST_TASKS_PER_TASK = 4

/**
 * The host cgroup's limits for a gVisor sandbox whose workload may run `limits.pids` tasks.
 * Inside, RLIMIT_NPROC stops the workload at its own limit (fork fails with EAGAIN); the
 * cgroup's pids limit is the host's backstop above it, since reaching it makes the gVisor
 * kernel fail to create a stub, which ends the whole sandbox.
 */
export function hostLimits(limits: SandboxLimits): SandboxLimits {
  return {...limits, pids: limits.pids === null ? null : SANDBOX_HOST_TASKS + HOST_TASKS_PER_TASK * limits.pids}
}
