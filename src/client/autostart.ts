import {type ChildProcess, spawn} from 'node:child_process'
import {existsSync} from 'node:fs'
import {mkdir, open, readFile} from 'node:fs/promises'
import {dirname, join, resolve} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {type DaemonOwner, probeStateLock} from '../daemon/lock.js'
import {CleanroomError} from '../errors/index.js'
import {defaultSocketPath, stateDir} from '../paths.js'
import {closeInheritedFds} from '../util/fds.js'
import {socketAnswers} from '../util/socket.js'
import {requireTrustedDirectory} from './socket-trust.js'

const START_TIMEOUT_MS = 15_000
const POLL_MS = 25

/**
 * Starts `cleanroom serve` on `socketPath` unless a daemon listens there by now,
 * detached, its output in the state dir's daemon.log, and waits until it listens.
 * One daemon owns a state dir: when one already does and listens on another socket
 * (a typo in --host, a stale CLEANROOM_HOST), nothing is started and the error says
 * where it is. A socket named with --host or CLEANROOM_HOST in a directory that does
 * not exist is taken for a typo too: no daemon, and no directory made for one.
 * CLIs starting one at once all end up with the one that won.
 * Never into a socket or state directory another user could write.
 */
export async function startDaemon(socketPath: string, runScript: string, env: NodeJS.ProcessEnv): Promise<void> {
  requireTrustedDirectory(dirname(socketPath))
  requireTrustedDirectory(stateDir(env))
  if (await socketAnswers(socketPath)) return
  const state = stateDir(env)
  const deadline = Date.now() + START_TIMEOUT_MS
  const logPath = join(state, 'daemon.log')
  const before = await probeStateLock(state)
  if (before.held) return waitForOwner(socketPath, state, before.owner, env, deadline)
  if (resolve(socketPath) !== resolve(defaultSocketPath(env)) && !existsSync(dirname(socketPath))) throw noSuchDirectory(socketPath)

  await mkdir(state, {recursive: true, mode: 0o700})
  const child = await spawnDaemon(socketPath, runScript, env, logPath)
  let exited = false
  child.once('exit', () => {
    exited = true
  })
  while (Date.now() < deadline) {
    if (await socketAnswers(socketPath)) return
    if (exited) {
      // It would not start; most often another CLI's daemon took the state dir first.
      const after = await probeStateLock(state)
      if (after.held) return waitForOwner(socketPath, state, after.owner, env, deadline)
      throw await notStarted(`the cleanroom daemon exited before it listened (log: ${logPath})`, logPath)
    }
    await sleep(POLL_MS)
  }
  throw await notStarted(`the cleanroom daemon did not start within ${START_TIMEOUT_MS / 1000}s (log: ${logPath})`, logPath)
}

async function spawnDaemon(socketPath: string, runScript: string, env: NodeJS.ProcessEnv, logPath: string): Promise<ChildProcess> {
  const log = await open(logPath, 'a', 0o600)
  // The daemon gets stdio and nothing else: the CLI's inherited fds (it needs none) would pass to it.
  closeInheritedFds()
  try {
    const child = spawn(process.execPath, [runScript, 'serve', '--listen', `unix://${socketPath}`], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env,
    })
    child.unref()
    return child
  } finally {
    await log.close()
  }
}

/** The state's owner is starting on our socket (wait for it), or listens elsewhere (say so, with the fix). */
async function waitForOwner(socketPath: string, state: string, owner: DaemonOwner | undefined, env: NodeJS.ProcessEnv, deadline: number): Promise<void> {
  if (owner && resolve(owner.socket) !== resolve(socketPath)) throw elsewhere(socketPath, state, owner, env)
  while (Date.now() < deadline) {
    if (await socketAnswers(socketPath)) return
    await sleep(POLL_MS)
  }
  const who = owner ? `pid ${owner.pid}` : 'a daemon that does not say which'
  throw new CleanroomError('daemon_unavailable', `the cleanroom daemon that owns ${state} (${who}) does not answer at ${socketPath}`, {
    suggestions: ['Stop it (sandboxes keep running): cleanroom serve stop', `See what it logged: ${join(state, 'daemon.log')}`],
  })
}

function elsewhere(socketPath: string, state: string, owner: DaemonOwner, env: NodeJS.ProcessEnv): CleanroomError {
  const host = `unix://${owner.socket}`
  const talk = resolve(owner.socket) === resolve(defaultSocketPath(env)) ? 'Talk to it: leave out --host and unset CLEANROOM_HOST' : `Talk to it: --host ${host} (or CLEANROOM_HOST=${host})`
  return new CleanroomError(
    'daemon_elsewhere',
    `no cleanroom daemon answers at ${socketPath}, and the daemon that owns ${state} (pid ${owner.pid}, version ${owner.version}) listens at ${owner.socket}: one daemon serves a state dir`,
    {
      details: {socket: socketPath, state_dir: state, owner},
      suggestions: [talk, `Or stop it, and the next command starts one at ${socketPath}: cleanroom serve stop --host ${host}`],
    },
  )
}

function noSuchDirectory(socketPath: string): CleanroomError {
  return new CleanroomError('daemon_unavailable', `no cleanroom daemon answers at ${socketPath}, and ${dirname(socketPath)} does not exist: no daemon is started there`, {
    details: {socket: socketPath},
    suggestions: ['Use the default daemon (started when needed): leave out --host and unset CLEANROOM_HOST', `Or start one on that socket: cleanroom serve --listen unix://${socketPath}`],
  })
}

async function notStarted(message: string, logPath: string): Promise<CleanroomError> {
  const tail = (await readFile(logPath, 'utf8').catch(() => '')).trim().split('\n').slice(-10).join('\n')
  return new CleanroomError('daemon_unavailable', `${message}\n${tail}`, {suggestions: ['Run it in the foreground to see why: cleanroom serve']})
}
