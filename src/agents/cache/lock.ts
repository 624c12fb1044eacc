import {open, readFile, unlink} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError} from '../../errors/index.js'

const POLL_MS = 200

/**
 * Runs `work` holding the lock file `path` (created exclusively, holding our pid):
 * another process that holds it is waited for; a lock whose process is gone is
 * taken over. The daemon also queues its own callers (AgentPackages), so this
 * only matters between daemons that share a cache directory; two that take over
 * one dead lock at once both fetch, and both land the same content-addressed entry.
 */
export async function withLock<T>(path: string, work: () => Promise<T>, options: {timeoutMs: number; what: string}): Promise<T> {
  const deadline = Date.now() + options.timeoutMs
  for (;;) {
    try {
      const file = await open(path, 'wx', 0o600)
      await file.writeFile(`${process.pid}\n`)
      await file.close()
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
    const holder = Number((await readFile(path, 'utf8').catch(() => '')).trim())
    if (!isAlive(holder)) {
      // A lock of a process that died, or one being written this instant (no pid yet): retried once it settles.
      if (Number.isInteger(holder) && holder > 0) await unlink(path).catch(() => undefined)
      await sleep(POLL_MS)
      continue
    }
    if (Date.now() > deadline) {
      throw new CleanroomError('agent_cache_busy', `${options.what} is being fetched by another cleanroom daemon (pid ${holder}) for longer than ${Math.round(options.timeoutMs / 1000)} s`, {
        suggestions: [`Try again when it is done, or remove ${path} if pid ${holder} is not a cleanroom daemon`],
      })
    }
    await sleep(POLL_MS)
  }
  try {
    return await work()
  } finally {
    await unlink(path).catch(() => undefined)
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
