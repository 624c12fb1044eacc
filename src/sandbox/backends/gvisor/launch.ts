import type {ChildProcess} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {open, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Readable} from 'node:stream'

import {CleanroomError} from '../../../errors/index.js'
import {killLaunch, LAUNCH_RECORD, type LaunchRecord, logTail} from '../linux-ns/launch.js'
import {goneWithin, killIfSame, processFacts, processStatSync} from '../linux-ns/runtime.js'
import {CONTAINER_ID, runscRoot, spawnRunsc} from './runsc.js'

/** runsc starts a sandbox in ~0.2 s on an idle machine; a loaded one can take many times that. */
const READY_TIMEOUT_MS = 30_000
/** How long a killed kernel may take to be gone (bounded: a stuck one is the removal's to deal with). */
const KERNEL_GONE_MS = 5_000

/** `<state>/launch.json` (the record linux-ns writes too) and the run dir: what a later daemon needs to undo a launch it did not see finish. */
export interface GvisorLaunchRecord extends LaunchRecord {
  run_dir: string
}

/** The host processes of a sandbox runsc started, and its init's word that it is up. */
export interface LaunchedSandbox {
  sandbox: {pid: number; startTime: number}
  gofer: {pid: number; startTime: number}
  /**
   * Resolves once the sandbox's init said "ready" (its ports listen); rejects, with what
   * the helpers logged, when it said anything else, ended or stayed silent past the
   * timeout, and then the sandbox's gVisor kernel has been killed. Never left unhandled.
   */
  ready: Promise<void>
}

/**
 * Starts `nsinit create … -- runsc … run --detach` in a session of its own (a daemon
 * restart must not touch it), stderr to `logPath`, and waits until runsc run has
 * started the container and exited, as `runsc run --detach` itself returns. No launcher
 * stays behind: the gVisor kernel and the gofer are all a sandbox holds on the host,
 * named by runsc's record. The "ready" line the sandbox's init writes on its stdout
 * (which runsc hands it) comes 10-25 ms later, while the daemon answers: `ready` is
 * what everything that runs inside waits for. On a failed start the launch's process
 * group is killed and the error carries what the helper and runsc said. `initInput`:
 * what init reads on its stdin (the exec server's key). `whileStarting` is called once
 * the launch is spawned and recorded: work that need not delay it starts then, while runsc runs.
 */
export async function launchSandbox(
  nsinit: string,
  argv: string[],
  logPath: string,
  stateDir: string,
  runDir: string,
  {initInput, whileStarting}: {initInput?: string; whileStarting?: () => void} = {},
): Promise<LaunchedSandbox> {
  const log = await open(logPath, 'a', 0o600)
  let child: ChildProcess
  try {
    child = spawnRunsc(nsinit, argv, [initInput === undefined ? 'ignore' : 'pipe', 'pipe', log.fd])
  } finally {
    await log.close()
  }
  if (initInput !== undefined) {
    // A launch that fails before init reads it closes the pipe: the error is the launch's.
    child.stdin!.on('error', () => undefined)
    child.stdin!.end(initInput)
  }
  const stdout = child.stdout as Readable
  try {
    recordLaunch(stateDir, runDir, child)
    whileStarting?.()
    const said = firstLine(stdout, child)
    // Read in full below; until then a line that never comes must not be an unhandled rejection.
    said.catch(() => undefined)
    await launcherExit(child)
    const started = await startedProcesses(runDir)
    const ready = initReady(said, stdout, started.sandbox, logPath)
    ready.catch(() => undefined)
    return {...started, ready}
  } catch (error) {
    stdout.destroy()
    await killLaunch(child)
    throw await launchError(error, logPath)
  }
}

/** `said` is "ready", or the sandbox's kernel is killed and the promise rejects with the reason and the launch's log. */
async function initReady(said: Promise<string | undefined>, stdout: Readable, kernel: {pid: number; startTime: number}, logPath: string): Promise<void> {
  try {
    const line = await said
    if (line !== 'ready') throw new Error(line === undefined ? 'the sandbox exited before it was ready' : `unexpected first line from the sandbox: ${line}`)
  } catch (error) {
    // Gone before the promise rejects: whoever waited sees a dead sandbox, never one about to die.
    await killIfSame(kernel.pid, kernel.startTime)
    await goneWithin([kernel], KERNEL_GONE_MS)
    throw await launchError(error, logPath)
  } finally {
    stdout.destroy()
  }
}

async function launchError(error: unknown, logPath: string): Promise<CleanroomError> {
  const said = await logTail(logPath)
  const why = error instanceof Error ? error.message : String(error)
  return new CleanroomError('backend_failed', `could not start the gVisor sandbox: ${why}${said ? `\n${said}` : ''}`, {cause: error, details: {log: said}})
}

/** Written at once after the spawn, with nothing awaited in between: a daemon killed at any later moment leaves it behind. */
function recordLaunch(stateDir: string, runDir: string, child: ChildProcess): void {
  if (child.pid === undefined) return
  const leader = processStatSync(child.pid)
  if (leader === undefined) throw new Error('the launch helper is gone right after it was started')
  const record: GvisorLaunchRecord = {pgid: child.pid, start_time: leader.startTime, run_dir: runDir}
  writeFileSync(join(stateDir, LAUNCH_RECORD), `${JSON.stringify(record)}\n`, {mode: 0o600})
}

/** The first line the sandbox writes, within the timeout; undefined when it ends first. */
function firstLine(stream: Readable, child: ChildProcess): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    let text = ''
    const timer = setTimeout(() => reject(new Error(`the sandbox was not ready after ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)
    const done = (line: string | undefined) => {
      clearTimeout(timer)
      stream.off('data', onData)
      resolve(line)
    }
    const onData = (chunk: Buffer): void => {
      text += chunk.toString('utf8')
      const end = text.indexOf('\n')
      if (end !== -1) done(text.slice(0, end))
    }
    stream.on('data', onData)
    stream.once('end', () => done(undefined))
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

/** `runsc run --detach` ends once the container runs: anything but exit 0 is a failed start. */
function launcherExit(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`runsc did not start the sandbox within ${READY_TIMEOUT_MS / 1000} s`)), READY_TIMEOUT_MS)
    child.once('exit', (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve()
      else reject(new Error(`runsc run exited with ${signal ? `signal ${signal}` : `exit code ${code}`}`))
    })
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}

/** The gVisor kernel (runsc-sandbox) and the gofer, as runsc recorded them in the sandbox's root. */
async function startedProcesses(runDir: string): Promise<Omit<LaunchedSandbox, 'ready'>> {
  const record = await runscRecord(runDir)
  const started = async (pid: unknown, name: string): Promise<{pid: number; startTime: number}> => {
    if (typeof pid !== 'number') throw new Error(`runsc's record of the sandbox names no ${name}`)
    const facts = await runningAs(pid, name)
    if (!facts) throw new Error('the sandbox exited right after it was ready')
    return {pid, startTime: facts.startTime}
  }
  const [sandbox, gofer] = await Promise.all([started(record.sandbox?.pid, 'runsc-sandbox'), started(record.goferPid, 'runsc-gofer')])
  return {sandbox, gofer}
}

/**
 * Whether a process runsc recorded for the run dir's container (its kernel or its gofer)
 * still runs under that name; true also when the record cannot be read, so that a
 * caller deciding what to remove keeps what it cannot judge.
 */
export async function recordedProcessRuns(runDir: string): Promise<boolean> {
  const record = await runscRecord(runDir).catch(() => undefined)
  if (record === undefined) return true
  const running = await Promise.all([
    typeof record.sandbox?.pid === 'number' && record.sandbox.pid > 0 ? runningAs(record.sandbox.pid, 'runsc-sandbox') : undefined,
    typeof record.goferPid === 'number' && record.goferPid > 0 ? runningAs(record.goferPid, 'runsc-gofer') : undefined,
  ])
  return running.some((facts) => facts !== undefined)
}

async function runscRecord(runDir: string): Promise<{goferPid?: unknown; sandbox?: {pid?: unknown}}> {
  return JSON.parse(await readFile(join(runscRoot(runDir), `${CONTAINER_ID}_sandbox:${CONTAINER_ID}.state`), 'utf8')) as {goferPid?: unknown; sandbox?: {pid?: unknown}}
}

/** The process `pid`, when it runs (not a zombie) as the program `name`. */
async function runningAs(pid: number, name: string): Promise<{startTime: number} | undefined> {
  const [command, facts] = await Promise.all([readFile(`/proc/${pid}/cmdline`, 'utf8').then((text) => text.split('\0')[0], () => ''), processFacts(pid)])
  return facts && facts.state !== 'Z' && command === name ? facts : undefined
}
