import {lockSocketName, probeStateLock} from '../daemon/lock.js'
import {CleanroomError} from '../errors/index.js'
import {stateDir} from '../paths.js'
import {pollUntil} from '../util/poll.js'
import {holdsSocket, listeningSocketInodes, processIdentity} from '../util/proc.js'
import {DaemonClient} from './client.js'

/** `cleanroom serve stop --json`. */
export interface StopResult {
  /** False when no daemon was running there. */
  stopped: boolean
  socket: string
  pid?: number
  version?: string
  /** SIGKILL when it was still there `TERM_WAIT_MS` after SIGTERM. */
  signal?: 'SIGTERM' | 'SIGKILL'
}

const PING_TIMEOUT_MS = 2000
/** A daemon stops within 5 s of SIGTERM whatever it has open; past this it is taken for hung. */
export const TERM_WAIT_MS = 6000
const KILL_WAIT_MS = 3000
const POLL_MS = 25

/**
 * Stops the daemon on `socketPath`, also one of another version (every version
 * answers /v1/ping with its pid) or one too hung to answer (found through the state
 * dir's lock). The pid is signalled only when it is a process of this user that
 * listens on that socket or holds that lock: never a stranger, never a recycled pid.
 * SIGTERM, then SIGKILL after TERM_WAIT_MS. Sandboxes keep running either way.
 */
export async function stopDaemon(socketPath: string, env: NodeJS.ProcessEnv = process.env): Promise<StopResult> {
  const found = await findDaemon(socketPath, env)
  if (!found) return {stopped: false, socket: socketPath}
  const {pid, version} = found
  const identity = await processIdentity(pid)
  if (!identity || identity.zombie) return {stopped: false, socket: socketPath}
  if (identity.uid !== process.getuid?.()) {
    throw new CleanroomError('usage', `pid ${pid}, named as the daemon at ${socketPath}, is not a process of this user: not stopping it`)
  }
  const names = [socketPath, ...((await lockSocketName(stateDir(env)).catch(() => undefined)) ?? [])]
  if (!(await holdsSocket(pid, await listeningSocketInodes(names)))) {
    throw new CleanroomError('usage', `pid ${pid} neither listens on ${socketPath} nor holds the state dir's lock: it is not the cleanroom daemon there, not stopping it`)
  }
  const result = {stopped: true, socket: socketPath, pid, ...(version === undefined ? {} : {version})}
  process.kill(pid, 'SIGTERM')
  if (await goneWithin(pid, identity.startTime, TERM_WAIT_MS)) return {...result, signal: 'SIGTERM'}
  process.kill(pid, 'SIGKILL')
  if (await goneWithin(pid, identity.startTime, KILL_WAIT_MS)) return {...result, signal: 'SIGKILL'}
  throw new CleanroomError('backend_failed', `the cleanroom daemon (pid ${pid}) is still there ${KILL_WAIT_MS / 1000} s after SIGKILL`)
}

/** The daemon answering on the socket; else the owner of the state dir, when it says it serves this socket. */
async function findDaemon(socketPath: string, env: NodeJS.ProcessEnv): Promise<{pid: number; version?: string} | undefined> {
  const answer = await new DaemonClient(socketPath, {timeoutMs: PING_TIMEOUT_MS}).ping().catch(() => undefined)
  if (answer) return {pid: answer.pid, version: answer.version}
  const probe = await probeStateLock(stateDir(env))
  if (!probe.held || probe.owner?.socket !== socketPath) return undefined
  return {pid: probe.owner.pid, version: probe.owner.version}
}

async function goneWithin(pid: number, startTime: number, timeoutMs: number): Promise<boolean> {
  return pollUntil(async () => {
    const identity = await processIdentity(pid)
    return !identity || identity.zombie || identity.startTime !== startTime
  }, timeoutMs, POLL_MS)
}
