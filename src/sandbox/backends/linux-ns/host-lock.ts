import {createHash} from 'node:crypto'
import {createServer, type Server} from 'node:net'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError} from '../../../errors/index.js'

const WAIT_MS = 10_000
const RETRY_MS = 5

/**
 * A lock shared by every process of the machine (its network namespace), held by
 * listening on an abstract unix socket named after `key`: the kernel frees it when the
 * holder exits, however it exits, so no holder's crash can leave it taken. Node has no
 * flock(); this needs no file and no helper process.
 */
export async function withHostLock<T>(key: string, what: string, action: () => Promise<T>): Promise<T> {
  const server = await acquire(`\0cleanroom-lock-${createHash('sha256').update(key).digest('hex').slice(0, 32)}`, what)
  try {
    return await action()
  } finally {
    await new Promise((resolve) => server.close(resolve))
  }
}

async function acquire(name: string, what: string): Promise<Server> {
  const deadline = Date.now() + WAIT_MS
  for (;;) {
    const server = createServer()
    const bound = await new Promise<NodeJS.ErrnoException | undefined>((resolve) => {
      server.once('error', resolve)
      server.listen(name, () => {
        server.off('error', resolve)
        resolve(undefined)
      })
    })
    if (bound === undefined) return server
    if (bound.code !== 'EADDRINUSE') throw bound
    if (Date.now() > deadline) {
      throw new CleanroomError('backend_failed', `${what} has been locked by another process for ${WAIT_MS / 1000} s`, {
        suggestions: ['Retry; if it persists, find the holder with: grep cleanroom-lock /proc/net/unix'],
      })
    }
    await sleep(RETRY_MS)
  }
}
