import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {RuntimeConfig} from '../config/schema.js'
import {messageOf} from '../errors/index.js'
import {startDaemon} from './daemon.js'
import {daemonLogger} from './log.js'

export interface ForegroundOptions {
  socketPath: string
  stateDir: string
  config: RuntimeConfig
  version: string
  shutdownSandboxes: boolean
}

/** How long a stopping daemon may take to close its connections and egress proxies. */
export const STOP_DEADLINE_MS = 4000
/** With --shutdown-sandboxes, removing them may take longer (each removal is bounded on its own). */
const SHUTDOWN_DEADLINE_MS = 60_000

/**
 * `cleanroom serve`: runs the daemon until SIGINT or SIGTERM, stops it, and exits.
 * Stopping is bounded: whatever is still open at the deadline (a client that never
 * reads, a disk that hangs) does not keep the process alive, and neither do the
 * pipes of executions whose clients are gone. Sandboxes keep running either way.
 */
export async function serveInForeground(options: ForegroundOptions): Promise<never> {
  const log = daemonLogger(join(options.stateDir, 'daemon.log'))
  const daemon = await startDaemon({socketPath: options.socketPath, stateDir: options.stateDir, config: options.config, version: options.version, log})
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGINT', resolve)
    process.once('SIGTERM', resolve)
  })
  log(`${signal}: stopping${options.shutdownSandboxes ? ' and removing every sandbox' : '; sandboxes keep running'}`)
  const deadline = options.shutdownSandboxes ? SHUTDOWN_DEADLINE_MS : STOP_DEADLINE_MS
  const closed = daemon.close({shutdownSandboxes: options.shutdownSandboxes}).then(
    () => true,
    (error: unknown) => {
      log(`stopping: ${messageOf(error)}`)
      return true
    },
  )
  const inTime = await Promise.race([closed, sleep(deadline).then(() => false)])
  log(inTime ? 'stopped' : `still stopping after ${deadline / 1000} s: exiting anyway`)
  // A stopped daemon exits even while an execution's relay still holds a pipe to it.
  process.exit(0)
}
