import {type ChildProcess, spawn} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {open, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError} from '../../../errors/index.js'
import {LaunchLog} from './launch-log.js'
import {READY_FD, STATUS_FD} from './nsinit.js'
import {SANDBOX_PATH} from '../../layout.js'
import {mountNamespace, processFacts, processStatSync} from './runtime.js'

const READY_TIMEOUT_MS = 10_000
const LOG_LINES_IN_ERRORS = 20
const KILL_WAIT_MS = 2000

/** `<state>/launch.json`: the launch's process group, written before it waits for "ready". */
export const LAUNCH_RECORD = 'launch.json'

/** What a later daemon needs to find and kill a launch it did not see finish: the group holds nsinit (then bwrap) and the init. */
export interface LaunchRecord {
  /** The process group: the detached launch's own pid. */
  pgid: number
  /** Its leader's start time, so a recycled pid is never taken for it. */
  start_time: number
}

/** A sandbox init that said it runs. */
export interface LaunchedInit {
  /** The outer bwrap (nsinit became it): our child, to be reaped at terminate. */
  child: ChildProcess
  initPid: number
  initStartTime: number
  mntNs: number
  bwrapPid: number
  bwrapStartTime: number
}

/**
 * Starts `nsinit create … -- bwrap …` detached (a daemon restart must not touch it,
 * so no --die-with-parent), its stderr copied to `logPath` until ready, records its process group in
 * `stateDir` and waits until the held command inside writes "ready". On any failure
 * everything started is killed and the error carries the helper's stderr.
 * `whileStarting` is called once the launch is spawned and recorded: work that need
 * not delay it starts then.
 */
export async function launchInit(nsinit: string, argv: string[], logPath: string, stateDir: string, whileStarting?: () => void): Promise<LaunchedInit> {
  // The launch's stderr is a pipe the daemon copies into the log and closes once the sandbox is ready:
  // bwrap's init and the held command keep it, and a host file they held could be written from inside.
  const file = await open(logPath, 'a', 0o600)
  let child: ChildProcess
  try {
    child = spawn(nsinit, argv, {detached: true, stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: {PATH: SANDBOX_PATH}})
  } catch (error) {
    await file.close()
    throw error
  }
  const log = new LaunchLog(file, child.stderr!)
  const spawnFailure = new Promise<never>((_, reject) => child.once('error', reject))
  spawnFailure.catch(() => undefined)

  const status = child.stdio[STATUS_FD] as Readable
  const ready = child.stdio[READY_FD] as Readable
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the sandbox was not ready after ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)
  })
  try {
    recordLaunch(stateDir, child)
    whileStarting?.()
    const started = await Promise.race([firstLine(status), spawnFailure, timeout])
    const initPid = (JSON.parse(started ?? '{}') as {'child-pid'?: unknown})['child-pid']
    if (typeof initPid !== 'number') throw new Error(started === undefined ? 'the launch helper exited' : `unexpected bwrap status: ${started}`)
    if ((await Promise.race([firstLine(ready), timeout])) !== 'ready') throw new Error('the sandbox exited before it was ready')

    const [init, mntNs, bwrap] = await Promise.all([processFacts(initPid), mountNamespace(initPid), processFacts(child.pid ?? -1)])
    if (!init || mntNs === undefined || !bwrap || child.pid === undefined) throw new Error('the sandbox exited right after it was ready')
    status.destroy()
    ready.destroy()
    await log.close()
    child.unref()
    return {child, initPid, initStartTime: init.startTime, mntNs, bwrapPid: child.pid, bwrapStartTime: bwrap.startTime}
  } catch (error) {
    status.destroy()
    ready.destroy()
    await killLaunch(child)
    await log.close(KILL_WAIT_MS)
    const helperSaid = await logTail(logPath)
    const why = error instanceof Error ? error.message : String(error)
    throw new CleanroomError('backend_failed', `could not start the sandbox: ${why}${helperSaid ? `\n${helperSaid}` : ''}`, {
      cause: error,
      details: {log: helperSaid},
    })
  } finally {
    clearTimeout(timer)
  }
}

/**
 * Written at once after the spawn, with nothing awaited in between: a daemon killed
 * at any later moment leaves what its successor needs to kill the launch.
 */
function recordLaunch(stateDir: string, child: ChildProcess): void {
  if (child.pid === undefined) return
  const leader = processStatSync(child.pid)
  if (leader === undefined) throw new Error('the launch helper is gone right after it was started')
  const record: LaunchRecord = {pgid: child.pid, start_time: leader.startTime}
  writeFileSync(join(stateDir, LAUNCH_RECORD), `${JSON.stringify(record)}\n`, {mode: 0o600})
}

/** The first line of a stream, without its newline; undefined at end of stream. */
function firstLine(stream: Readable): Promise<string | undefined> {
  return new Promise((resolve) => {
    let text = ''
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8')
      const end = text.indexOf('\n')
      if (end === -1) return
      stream.off('data', onData)
      stream.pause()
      resolve(text.slice(0, end))
    }
    stream.on('data', onData)
    stream.once('end', () => resolve(undefined))
    stream.once('error', () => resolve(undefined))
  })
}

/** Kills the whole launch (its process group: nsinit and what it started, bwrap or runsc, and the sandbox) and reaps it. */
export async function killLaunch(child: ChildProcess): Promise<void> {
  if (child.pid === undefined) return
  const running = child.exitCode === null && child.signalCode === null
  const exited = running ? new Promise((resolve) => child.once('exit', resolve)) : Promise.resolve()
  try {
    process.kill(-child.pid, 'SIGKILL')
  } catch {
    // the group is gone already
  }
  await Promise.race([exited, sleep(KILL_WAIT_MS)])
}

/** The last lines a launch's helpers wrote, for an error message. */
export async function logTail(logPath: string): Promise<string> {
  const text = await readFile(logPath, 'utf8').catch(() => '')
  return text.trim().split('\n').slice(-LOG_LINES_IN_ERRORS).join('\n')
}
