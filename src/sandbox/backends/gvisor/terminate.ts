import type {ChildProcess} from 'node:child_process'
import {readdir, readFile, rm} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {isRunning} from '../linux-ns/runtime.js'
import {CONTAINER_ID, rootFlags, runscCommand} from './runsc.js'
import {type GvisorRuntime, sandboxProcesses} from './runtime.js'

const GONE_TIMEOUT_MS = 5000
const POLL_MS = 10

/**
 * Ends a sandbox and everything it holds on the host: `runsc kill … KILL` ends its init,
 * and with it every process inside; `runsc run` then stops the gVisor kernel and the
 * gofer, removes the container's record and exits (we reap it when it is our child).
 * What is still there after that (a runsc that did not follow) is killed by pid, runsc's
 * record is deleted, and the run dir removed. The private mount namespace nsinit made
 * goes with the last of these processes: nothing is left mounted. Bounded; never fails
 * for a sandbox that is dead already.
 */
export async function killSandbox(runsc: string, runtime: GvisorRuntime, child: ChildProcess | undefined): Promise<void> {
  const processes = sandboxProcesses(runtime)
  const childExited = child && child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined
  if (await anyRunning(processes)) await runscCommand(runsc, [...rootFlags(runtime), 'kill', CONTAINER_ID, 'KILL'])
  if (childExited) await Promise.race([childExited, sleep(GONE_TIMEOUT_MS)])
  if (!(await goneWithin(processes, GONE_TIMEOUT_MS))) {
    for (const {pid, startTime} of processes) if (await isRunning(pid, startTime)) signal(pid)
    await goneWithin(processes, GONE_TIMEOUT_MS)
  }
  await runscCommand(runsc, [...rootFlags(runtime), 'delete', '--force', CONTAINER_ID])
  // The systrap stubs the kernel made die with it, a moment later; only this sandbox runs as its uid.
  await killUid(runtime.host_uid)
  await rm(runtime.run_dir, {recursive: true, force: true})
}

/** SIGKILLs every process running as `uid` and waits (bounded) until none is left. */
export async function killUid(uid: number): Promise<void> {
  const deadline = Date.now() + GONE_TIMEOUT_MS
  for (;;) {
    const pids = await pidsOfUid(uid)
    if (pids.length === 0 || Date.now() > deadline) return
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // exited in between
      }
    }
    await sleep(POLL_MS)
  }
}

async function pidsOfUid(uid: number): Promise<number[]> {
  const pids = (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))
  const owned = await Promise.all(
    pids.map(async (pid) => {
      const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '')
      const real = /^Uid:\s+(\d+)/m.exec(status)?.[1]
      const state = /^State:\s+(\S)/m.exec(status)?.[1]
      return real === String(uid) && state !== 'Z' ? Number(pid) : undefined
    }),
  )
  return owned.filter((pid): pid is number => pid !== undefined)
}

async function anyRunning(processes: Array<{pid: number; startTime: number}>): Promise<boolean> {
  return (await Promise.all(processes.map(({pid, startTime}) => isRunning(pid, startTime)))).includes(true)
}

async function goneWithin(processes: Array<{pid: number; startTime: number}>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  while (await anyRunning(processes)) {
    if (Date.now() > deadline) return false
    await sleep(POLL_MS)
  }
  return true
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited in between
  }
}
