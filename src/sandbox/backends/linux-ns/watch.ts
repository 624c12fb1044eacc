import {readlink} from 'node:fs/promises'

import {processIds} from '../../../util/proc.js'
import {isRunning, type LinuxNsRuntime, processStatSync} from './runtime.js'

const POLL_MS = 1000
/** The init (bwrap's pid 1) and the held command: what every sandbox runs when nothing else does. */
const IDLE_PROCESSES = 2

interface WatchedInit {
  pid: number
  startTime: number
  onExit: (why: string) => void
}

/**
 * Watches the inits of sandboxes this process did not launch (adopted after a
 * restart): they are not its children, so no exit event comes. One timer for all
 * of them, one small /proc read per sandbox and tick; no timer when none is watched.
 */
export class InitPoller {
  private readonly watched = new Set<WatchedInit>()
  private timer: NodeJS.Timeout | undefined

  watch(runtime: Pick<LinuxNsRuntime, 'init_pid' | 'init_start_time'>, onExit: (why: string) => void): () => void {
    const entry: WatchedInit = {pid: runtime.init_pid, startTime: runtime.init_start_time, onExit}
    this.watched.add(entry)
    this.timer ??= setInterval(() => this.tick(), POLL_MS).unref()
    return () => this.forget(entry)
  }

  private tick(): void {
    for (const entry of this.watched) {
      const stat = processStatSync(entry.pid)
      if (stat !== undefined && stat.startTime === entry.startTime && stat.state !== 'Z') continue
      this.forget(entry)
      entry.onExit(`its init process exited (found gone at ${new Date().toISOString()})`)
    }
  }

  private forget(entry: WatchedInit): void {
    this.watched.delete(entry)
    if (this.watched.size === 0 && this.timer) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }
}

/** Whether a process beyond the init and the held command runs in the sandbox's pid namespace (one pass over /proc). */
export async function hasWorkload(runtime: LinuxNsRuntime): Promise<boolean> {
  const namespace = await readlink(`/proc/${runtime.init_pid}/ns/pid`).catch(() => undefined)
  if (namespace === undefined || !(await isRunning(runtime.init_pid, runtime.init_start_time))) return false
  const pids = await processIds()
  const members = await Promise.all(pids.map((pid) => readlink(`/proc/${pid}/ns/pid`).then((link) => link === namespace, () => false)))
  return members.filter(Boolean).length > IDLE_PROCESSES
}
