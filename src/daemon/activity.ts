import type {SandboxProcess} from '../sandbox/backend.js'

interface SandboxActivity {
  running: Set<SandboxProcess>
  /** An ephemeral sandbox's first execution: its end, or its client leaving, ends the sandbox. */
  owner?: SandboxProcess
  /** Removes an ephemeral sandbox nothing ran in. */
  attachTimer?: NodeJS.Timeout
}

/**
 * The executions running in each sandbox, and the ephemeral sandboxes' owners: a
 * sandbox created for one command belongs to the execution of that command. It is
 * removed when that execution ends, when its client goes away first, or when no
 * execution starts within a bound of its creation (the client died in between).
 */
export class ExecActivity {
  private readonly sandboxes = new Map<string, SandboxActivity>()

  /** `onOwnerGone` removes an ephemeral sandbox, saying why. */
  constructor(private readonly onOwnerGone: (sandboxId: string, why: string) => void) {}

  /** An ephemeral sandbox is ready: its owner has `ms` to start. */
  awaitOwner(sandboxId: string, ms: number): void {
    const activity = this.of(sandboxId)
    clearTimeout(activity.attachTimer)
    activity.attachTimer = setTimeout(() => this.onOwnerGone(sandboxId, `nothing ran in it within ${ms / 1000} s of its creation`), ms)
    activity.attachTimer.unref()
  }

  started(sandboxId: string, process: SandboxProcess, ephemeral: boolean): void {
    const activity = this.of(sandboxId)
    activity.running.add(process)
    if (!ephemeral || activity.owner !== undefined) return
    activity.owner = process
    clearTimeout(activity.attachTimer)
    activity.attachTimer = undefined
  }

  finished(sandboxId: string, process: SandboxProcess): void {
    const activity = this.sandboxes.get(sandboxId)
    if (!activity?.running.delete(process)) return
    if (activity.owner === process) this.onOwnerGone(sandboxId, 'its command exited')
  }

  /** The client of `process` left before it exited: an ephemeral sandbox it owns goes, and the process with it. */
  clientGone(sandboxId: string, process: SandboxProcess): void {
    const activity = this.sandboxes.get(sandboxId)
    if (activity?.owner === process && activity.running.has(process)) this.onOwnerGone(sandboxId, 'the client of its command went away')
  }

  running(sandboxId: string): number {
    return this.sandboxes.get(sandboxId)?.running.size ?? 0
  }

  forget(sandboxId: string): void {
    clearTimeout(this.sandboxes.get(sandboxId)?.attachTimer)
    this.sandboxes.delete(sandboxId)
  }

  forgetAll(): void {
    for (const id of [...this.sandboxes.keys()]) this.forget(id)
  }

  private of(sandboxId: string): SandboxActivity {
    let activity = this.sandboxes.get(sandboxId)
    if (!activity) {
      activity = {running: new Set()}
      this.sandboxes.set(sandboxId, activity)
    }
    return activity
  }
}
