import {readFileSync} from 'node:fs'
import type {Server, Socket} from 'node:net'

/** Fds the daemon keeps for itself whatever the sandboxes do: its API, execs' pipes, state and audit files. */
const MIN_RESERVED_FDS = 256

/**
 * How many connections the egress proxies of all sandboxes may hold at once: a
 * quarter of the daemon's fd limit (RLIMIT_NOFILE) stays for the daemon itself,
 * and each proxied connection takes two fds (the sandbox's side and the
 * destination's). At least 1.
 */
export function daemonConnectionLimit(fdLimit = openFileLimit()): number {
  const reserved = Math.max(MIN_RESERVED_FDS, Math.ceil(fdLimit / 4))
  return Math.max(1, Math.floor((fdLimit - reserved) / 2))
}

/** The soft RLIMIT_NOFILE of this process (Node raises it to the hard limit at start). */
export function openFileLimit(): number {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((text) => text.startsWith('Max open files'))
    const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0]
    if (soft !== undefined && /^\d+$/.test(soft)) return Number(soft)
  } catch {
    // no /proc: assume the usual default
  }
  return 1024
}

/** The connections every sandbox's proxy holds together, shared by the daemon's proxies. */
export class ConnectionBudget {
  private open = 0

  constructor(readonly limit: number = daemonConnectionLimit()) {}

  /** Takes one connection's share; false when the daemon holds `limit` already. */
  take(): boolean {
    if (this.open >= this.limit) return false
    this.open++
    return true
  }

  release(): void {
    this.open--
  }
}

/** Which limit turned a connection away: the sandbox's own, or the daemon's across sandboxes. */
export type LimitReached = {limit: 'sandbox' | 'daemon'; max: number}

/**
 * Hands `serve` the connections `server` accepts while the sandbox holds fewer than
 * `perSandbox` and the daemon's budget has room; any other connection is closed at
 * once, so a sandbox at its limit costs the daemon one accept and no lasting fd.
 * `refused` hears of the first connection turned away, and again only after the
 * sandbox has dropped below half its limit: one note per burst, not per connection.
 */
export function capConnections(
  server: Server,
  limits: {perSandbox: number; budget: ConnectionBudget},
  serve: (socket: Socket) => void,
  refused: (reached: LimitReached) => void,
): void {
  let open = 0
  let noted = false
  server.on('connection', (socket: Socket) => {
    const reached: LimitReached | undefined =
      open >= limits.perSandbox ? {limit: 'sandbox', max: limits.perSandbox} : limits.budget.take() ? undefined : {limit: 'daemon', max: limits.budget.limit}
    if (reached) {
      socket.destroy()
      if (!noted) refused(reached)
      noted = true
      return
    }
    open++
    socket.once('close', () => {
      open--
      limits.budget.release()
      if (open < limits.perSandbox / 2) noted = false
    })
    serve(socket)
  })
}
