import {rm} from 'node:fs/promises'

import {pollUntil} from '../../../util/poll.js'
import {processIds} from '../../../util/proc.js'
import {goneWithin, isRunning, processStatusHead} from '../linux-ns/runtime.js'
import {CONTAINER_ID, rootFlags, runscCommand} from './runsc.js'
import {type GvisorRuntime, sandboxProcesses} from './runtime.js'

const GONE_TIMEOUT_MS = 5000

/**
 * Ends a sandbox and everything it holds on the host: SIGKILL to its recorded processes
 * (the gVisor kernel, which every process inside goes with, the gofer, and the `runsc
 * run` an attached start left), then to every process of its uid (the systrap stubs);
 * the run dir, which holds runsc's record of the container, is removed. The private
 * mount namespace nsinit made goes with the last of these processes: nothing is left
 * mounted. Bounded; never fails for a sandbox that is dead already.
 */
export async function killSandbox(runsc: string, runtime: GvisorRuntime): Promise<void> {
  const processes = sandboxProcesses(runtime)
  // SIGKILL to the recorded processes: the gVisor kernel takes every process inside with it.
  // `runsc kill` or `delete` of a detached sandbox (not runsc's child) polls for its end, 1.3-1.7 s.
  for (const {pid, startTime} of processes) if (await isRunning(pid, startTime)) signal(pid)
  // The kernel, the gofer and the systrap stubs all run as the sandbox's uid, and only they do: one sweep
  // waits for all of them, and kills the stubs rather than waiting for them to notice their kernel is gone.
  await killUid(runtime.host_uid)
  // runsc's record of the container is in the run dir, removed below; with a process left, runsc tries too.
  if (!(await goneWithin(processes, GONE_TIMEOUT_MS))) await runscCommand(runsc, [...rootFlags(runtime), 'delete', '--force', CONTAINER_ID])
  await rm(runtime.run_dir, {recursive: true, force: true})
}

/** SIGKILLs every process running as `uid` and waits (bounded) until none is left. */
export async function killUid(uid: number): Promise<void> {
  await pollUntil(async () => {
    const pids = await pidsOfUid(uid)
    for (const pid of pids) signal(pid)
    return pids.length === 0
  }, GONE_TIMEOUT_MS)
}

async function pidsOfUid(uid: number): Promise<number[]> {
  const pids = await processIds()
  const owned = await Promise.all(
    pids.map(async (pid) => {
      const status = await processStatusHead(pid).catch(() => '')
      const real = /^Uid:\s+(\d+)/m.exec(status)?.[1]
      const state = /^State:\s+(\S)/m.exec(status)?.[1]
      return real === String(uid) && state !== 'Z' ? Number(pid) : undefined
    }),
  )
  return owned.filter((pid): pid is number => pid !== undefined)
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited in between
  }
}
