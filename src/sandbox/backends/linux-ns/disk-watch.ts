import {execFile} from 'node:child_process'
import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {formatByteSize} from '../../../util/byte-size.js'
import {cpuTimeUsed, freezeSandboxCgroup, type SandboxCgroup} from './cgroups.js'

/** How often a sandbox's writes are measured while it uses CPU. */
export const DISK_CHECK_MS = 5000
/** After a measurement that took t, the next one waits at least 20·t: measuring stays under ~5 % of a CPU per sandbox, however many files it has. */
const MEASURE_SHARE = 20
const SOON_MS = 50
const DU_TIMEOUT_MS = 120_000

/** The parts of the state dir the sandbox writes: the overlays' upper and work dirs (an image's root's too), its home and /tmp. */
const WRITABLE = ['upper', 'work', 'home', 'tmp']
const IMAGE_WRITABLE = ['rootfs-upper', 'rootfs-work']

/**
 * Bytes on disk (allocated blocks, each hard-linked file once) under the sandbox's
 * writable dirs, measured by `du` as root: it never follows a symlink or leaves the
 * filesystem, and a directory the sandbox made unreadable to itself is still counted.
 */
export function writtenBytes(stateDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const dirs = [...WRITABLE, ...IMAGE_WRITABLE.filter((name) => existsSync(join(stateDir, name)))].map((name) => join(stateDir, name))
    execFile('du', ['-s', '-c', '-x', '-B1', '--', ...dirs], {env: {PATH: '/usr/bin:/bin', LC_ALL: 'C'}, timeout: DU_TIMEOUT_MS, maxBuffer: 64 * 1024}, (error, stdout) => {
      // du exits 1 when some entry vanished while it walked; its total is still good.
      const total = /^(\d+)\ttotal$/m.exec(stdout)?.[1]
      if (total === undefined) reject(error ?? new Error(`du printed no total: ${stdout.slice(0, 200)}`))
      else resolve(Number(total))
    })
  })
}

/**
 * Keeps one sandbox under its disk limit. It measures soon after an exec ends and,
 * while the sandbox uses CPU, every few seconds (a sandbox whose CPU time has not moved
 * wrote nothing), never sooner than MEASURE_SHARE times the last measurement after it.
 * Over the limit, the sandbox is frozen, `onBreach` is told why (once), and its
 * processes are killed; its files stay.
 */
export class DiskWatch {
  private timer: NodeJS.Timeout | undefined
  private dueAt = 0
  private running = false
  private stopped = false
  private lastCpu: number | undefined
  private pendingNudge = false
  /** No measurement starts before this: each is followed by a pause of 20 times its duration. */
  private notBefore = 0

  constructor(
    private readonly stateDir: string,
    private readonly cgroup: SandboxCgroup,
    private readonly limitBytes: number,
    private readonly onBreach: (reason: string) => void,
    /** Kills the frozen sandbox (its init, queued) and thaws it, so every process dies without running on: commands in it end (exit 137) instead of hanging. */
    private readonly stopProcesses: () => Promise<void>,
    private readonly onError: (message: string) => void,
  ) {}

  start(): void {
    this.schedule(0)
  }

  /** Something ran in the sandbox: measure soon (a sandbox running many short execs is measured at the pace above). */
  nudge(): void {
    this.pendingNudge = true
    if (this.running) return
    const soon = Math.max(SOON_MS, this.notBefore - Date.now())
    if (Date.now() + soon < this.dueAt) this.schedule(soon)
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return
    clearTimeout(this.timer)
    this.dueAt = Date.now() + delayMs
    this.timer = setTimeout(() => void this.check(), delayMs)
    // A watch never keeps the daemon alive on its own.
    this.timer.unref()
  }

  private async check(): Promise<void> {
    this.running = true
    try {
      const cpu = await cpuTimeUsed(this.cgroup)
      const idle = cpu !== undefined && cpu === this.lastCpu && !this.pendingNudge
      this.lastCpu = cpu
      this.pendingNudge = false
      if (!idle) {
        const started = performance.now()
        const used = await writtenBytes(this.stateDir)
        this.notBefore = Date.now() + MEASURE_SHARE * (performance.now() - started)
        if (used > this.limitBytes && !this.stopped) {
          this.stop()
          // Frozen first, so nothing writes or forks while it is told and taken down.
          await freezeSandboxCgroup(this.cgroup)
          this.onBreach(
            `it wrote ${formatByteSize(used)}, over its disk limit of ${formatByteSize(this.limitBytes)}: its processes were stopped. ` +
              'Save its changes (cleanroom workspace diff) and remove it (cleanroom sandbox rm)',
          )
          await this.stopProcesses()
        }
      }
    } catch (error) {
      this.onError(`disk limit check failed: ${(error as Error).message}`)
    } finally {
      this.running = false
      const wait = Math.max(0, this.notBefore - Date.now())
      this.schedule(this.pendingNudge ? Math.max(SOON_MS, wait) : Math.max(DISK_CHECK_MS, wait))
    }
  }
}
