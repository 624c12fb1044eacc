import {setTimeout as sleep} from 'node:timers/promises'

/** Between two checks of a poll. */
const POLL_MS = 10

/**
 * Calls `done` every `intervalMs` until it says true, or `timeoutMs` has passed (then
 * false): the bounded waits of a removal (a killed process gone, a cgroup empty or frozen).
 */
export async function pollUntil(done: () => Promise<boolean> | boolean, timeoutMs: number, intervalMs = POLL_MS): Promise<boolean> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    if (await done()) return true
    if (Date.now() > deadline) return false
    await sleep(intervalMs)
  }
}
