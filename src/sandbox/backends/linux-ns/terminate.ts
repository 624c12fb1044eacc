import type {ChildProcess} from 'node:child_process'
import {chmod, lstat, readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {LAUNCH_RECORD, type LaunchRecord} from './launch.js'
import {pollUntil} from '../../../util/poll.js'
import {processIds} from '../../../util/proc.js'
import {goneWithin, isRunning, type LinuxNsRuntime, processStatSync} from './runtime.js'

const GONE_TIMEOUT_MS = 5000

/**
 * Kills every process of the sandbox: SIGKILL to the init (pid 1 of the sandbox's pid
 * namespace ignores anything else) takes the whole namespace with it. The outer bwrap
 * then reaps the init and exits, and we reap bwrap when it is our child: a zombie still
 * pins the user namespace, and one orphaned to the machine's init may wait seconds for
 * its reaper (so bwrap is never killed first). Bounded; never fails for a sandbox that
 * is dead already.
 */
export async function killSandbox(runtime: LinuxNsRuntime, child: ChildProcess | undefined): Promise<void> {
  const init = {pid: runtime.init_pid, startTime: runtime.init_start_time}
  const bwrap = {pid: runtime.bwrap_pid, startTime: runtime.bwrap_start_time}
  const childExited = child && child.exitCode === null && child.signalCode === null ? new Promise((resolve) => child.once('exit', resolve)) : undefined
  await signalIfSame(init)
  if (childExited) await Promise.race([childExited, sleep(GONE_TIMEOUT_MS)])
  if (!(await goneWithin([init, bwrap], GONE_TIMEOUT_MS))) {
    // bwrap did not follow its init (not seen in practice): it holds nothing the sandbox can use.
    await signalIfSame(bwrap)
    await goneWithin([bwrap], GONE_TIMEOUT_MS)
  }
}

/**
 * Kills the process group a launch recorded in `stateDir` (nsinit or the bwrap it
 * became, and the init with everything in its pid namespace), bounded. The group is
 * signalled only while its leader is the process launched (same start time), or when
 * no process has that pid at all: a pid still in use as a group id is never handed
 * out again, so the group can then only be the launch's own orphans.
 */
export async function killLaunchGroup(stateDir: string): Promise<void> {
  const record = await readLaunchRecord(stateDir)
  if (record === undefined) return
  const leader = processStatSync(record.pgid)
  if (leader !== undefined && leader.startTime !== record.start_time) return
  if (!signalGroup(record.pgid, 'SIGKILL')) return
  await pollUntil(async () => (await liveMembers(record.pgid)) === 0, GONE_TIMEOUT_MS)
}

/** Processes of the group that have not exited; zombies waiting for a reaper that is not us do not count. */
async function liveMembers(pgid: number): Promise<number> {
  const pids = await processIds()
  const stats = await Promise.all(pids.map((pid) => readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '')))
  return stats.filter((line) => {
    const fields = line.slice(line.lastIndexOf(')') + 2).split(' ')
    return fields[2] === String(pgid) && fields[0] !== 'Z'
  }).length
}

async function readLaunchRecord(stateDir: string): Promise<LaunchRecord | undefined> {
  try {
    const value = JSON.parse(await readFile(join(stateDir, LAUNCH_RECORD), 'utf8')) as Partial<LaunchRecord>
    const valid = Number.isSafeInteger(value.pgid) && (value.pgid ?? 0) > 1 && Number.isSafeInteger(value.start_time)
    return valid ? (value as LaunchRecord) : undefined
  } catch {
    return undefined
  }
}

/** Signals every process of a group; false when none is left. */
function signalGroup(pgid: number, signal: NodeJS.Signals | 0): boolean {
  try {
    process.kill(-pgid, signal)
    return true
  } catch {
    return false
  }
}

async function signalIfSame({pid, startTime}: {pid: number; startTime: number}): Promise<void> {
  if (!(await isRunning(pid, startTime))) return
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // exited in between
  }
}

/**
 * Gives the owner rwx on every directory under `dir` (chmod -R u+rwX for what removal
 * needs): the kernel leaves the overlay's work/work at mode 000, which only root can empty.
 */
export async function makeRemovable(dir: string): Promise<void> {
  const stats = await lstat(dir).catch(() => undefined)
  if (!stats?.isDirectory()) return
  if ((stats.mode & 0o700) !== 0o700) await chmod(dir, (stats.mode & 0o7777) | 0o700)
  const entries = await readdir(dir, {withFileTypes: true})
  await Promise.all(entries.filter((entry) => entry.isDirectory()).map((entry) => makeRemovable(join(dir, entry.name))))
}
