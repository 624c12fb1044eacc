import type {ChildProcess} from 'node:child_process'
import {readdir, readFile, rm, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {LAUNCH_RECORD} from '../linux-ns/launch.js'
import {killLaunchGroup} from '../linux-ns/terminate.js'
import {HOST_UID_RANGE, releaseHostUid} from '../linux-ns/uids.js'
import {RUN_ROOT} from './provision.js'
import {CONTAINER_ID, rootFlags, runscCommand} from './runsc.js'
import type {GvisorRuntime} from './runtime.js'
import {killSandbox} from './terminate.js'

const GONE_TIMEOUT_MS = 5000
const POLL_MS = 20

/**
 * Ends a sandbox and gives back what it held: its processes, runsc's record, its run dir
 * and its host uid. With its runtime record that is `killSandbox`; without one (a create
 * cut short) the launch record in the state dir names the launch's process group and its
 * run dir, and the state dir's group is the uid claimed for it, which only that sandbox's
 * gVisor kernel and gofer run as.
 */
export async function reclaimSandbox(runsc: string, stateDir: string, runtime: GvisorRuntime | undefined, child: ChildProcess | undefined): Promise<void> {
  if (runtime) {
    await killSandbox(runsc, runtime, child)
    await releaseHostUid(runtime.host_uid, runtime.state_dir)
    return
  }
  const runDir = await launchRunDir(stateDir)
  if (runDir === undefined) return
  await killLaunchGroup(stateDir)
  await runscCommand(runsc, [...rootFlags({run_dir: runDir}), 'delete', '--force', CONTAINER_ID])
  const hostUid = (await stat(stateDir).catch(() => undefined))?.gid
  if (hostUid !== undefined && hostUid >= HOST_UID_RANGE.first && hostUid <= HOST_UID_RANGE.last) {
    await killUid(hostUid)
    await releaseHostUid(hostUid, stateDir)
  }
  await rm(runDir, {recursive: true, force: true})
}

/** The run dir a gvisor launch recorded; undefined for a state dir no gvisor launch wrote (another backend's). */
async function launchRunDir(stateDir: string): Promise<string | undefined> {
  try {
    const record = JSON.parse(await readFile(join(stateDir, LAUNCH_RECORD), 'utf8')) as {run_dir?: unknown}
    const runDir = record.run_dir
    // Only a dir of our own run root is ever removed.
    return typeof runDir === 'string' && runDir.startsWith(`${RUN_ROOT}/`) && !runDir.slice(RUN_ROOT.length + 1).includes('/') ? runDir : undefined
  } catch {
    return undefined
  }
}

/** SIGKILLs every process running as `uid` and waits (bounded) until none is left. */
async function killUid(uid: number): Promise<void> {
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

/**
 * Whether anything but cleanroom's own processes runs inside: the init, the egress
 * forwarders and each exec's `nsinit run` are all cleanroom-nsinit; any other
 * command is a workload, also one an exec left behind.
 */
export async function hasWorkload(runsc: string, runtime: GvisorRuntime): Promise<boolean> {
  const listed = await runscCommand(runsc, [...rootFlags(runtime), 'ps', '--format=json', CONTAINER_ID])
  if (!listed.ok) return false
  try {
    const processes = JSON.parse(listed.stdout) as Array<{CMD?: unknown; Cmd?: unknown}>
    return processes.some((entry) => String(entry.CMD ?? entry.Cmd ?? '') !== 'cleanroom-nsinit')
  } catch {
    return false
  }
}
