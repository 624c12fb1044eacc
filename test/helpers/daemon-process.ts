import {type ChildProcess, spawn} from 'node:child_process'
import {mkdir, open, readdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {DaemonClient} from '../../src/client/client.js'
import {connectDaemon, socketPathOf} from '../../src/client/connect.js'
import {stateDir as stateDirOf} from '../../src/paths.js'
import {isolatedEnv, PROJECT_ROOT, RUN_SCRIPT} from './cli.js'
import {expect} from 'chai'

import {sandboxPids, leftoverSandboxes, stopCliDaemon} from './daemon.js'
import {tempDirs} from './tmp.js'

/** A `cleanroom serve` of its own process, which a test may kill like a user would. */
export interface DaemonProcess {
  pid: number
  socketPath: string
  stateDir: string
  env: Record<string, string>
  /** A client that never starts a daemon and sends no version (as curl). */
  client: DaemonClient
  /** Resolves when the process has exited (and been reaped). */
  exited: Promise<void>
}

/**
 * Starts `cleanroom serve` (or `command`: node's arguments) with every per-user path
 * under `home` (as the CLI would start it: output appended to the state dir's
 * daemon.log), and waits until it answers. Throws with its log when it exits first.
 */
export async function spawnDaemon(home: string, args: string[] = [], command: string[] = [RUN_SCRIPT, 'serve']): Promise<DaemonProcess> {
  const env = isolatedEnv(home)
  const socketPath = socketPathOf(undefined, env)
  const stateDir = stateDirOf(env)
  await mkdir(stateDir, {recursive: true, mode: 0o700})
  const log = await open(join(stateDir, 'daemon.log'), 'a', 0o600)
  let child: ChildProcess
  try {
    child = spawn(process.execPath, [...command, ...args], {cwd: PROJECT_ROOT, env: {PATH: process.env.PATH ?? '/usr/bin:/bin', NO_COLOR: '1', ...env}, stdio: ['ignore', log.fd, log.fd]})
  } finally {
    await log.close()
  }
  let gone = false
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  void exited.then(() => {
    gone = true
  })
  const client = new DaemonClient(socketPath)
  const deadline = Date.now() + 20_000
  while (!(await client.ping().then(() => true, () => false))) {
    if (gone || Date.now() > deadline) throw new Error(`cleanroom serve did not start:\n${await readFile(join(stateDir, 'daemon.log'), 'utf8').catch(() => '')}`)
    await sleep(25)
  }
  return {pid: child.pid!, socketPath, stateDir, env, client, exited}
}

/**
 * Removes every sandbox under `home` and stops its daemon, whatever state a test
 * left it in: a daemon is started when none runs (it takes over, or finishes, what
 * a killed one left), every sandbox removed, then it is stopped.
 */
export async function removeEverything(home: string): Promise<void> {
  const env = {PATH: process.env.PATH ?? '/usr/bin:/bin', ...isolatedEnv(home)}
  const socketPath = socketPathOf(undefined, env)
  await connectDaemon({runScript: RUN_SCRIPT, env}).ping()
  await stopCliDaemon(socketPath)
}

/** The sandbox dirs in a state dir (with or without a record). */
export async function sandboxDirs(stateDir: string): Promise<string[]> {
  return (await readdir(join(stateDir, 'sandboxes')).catch(() => [])).filter((name) => name.startsWith('cr_')).sort()
}

/** Open file descriptors of a process. */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length
}

/** Resident memory of a process, in KiB. */
export async function rssKiB(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  return Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1] ?? Number.NaN)
}

/** Waits until `condition` holds, polling; fails naming `what` after `timeoutMs`. */
export async function eventually(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000, pollMs = 25): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`)
    await sleep(pollMs)
  }
}

/** CI runs the bounded count; `npm run test:stress` (CLEANROOM_STRESS=1) the full one. */
export function scaled(ci: number, stress: number): number {
  return process.env.CLEANROOM_STRESS === '1' ? stress : ci
}

/**
 * For a suite whose daemons run in one private home, made in `before`: in `after`,
 * every daemon and sandbox of it goes (and none may be left running) and the home is removed.
 */
export function daemonHomeSuite(prefix: string): {home: string} {
  const dirs = tempDirs(prefix)
  const context = {home: ''}
  let bwrapBefore = new Set<number>()
  before(async () => {
    bwrapBefore = await sandboxPids()
    context.home = await dirs.make()
  })
  after(async () => {
    await removeEverything(context.home)
    expect(await leftoverSandboxes(bwrapBefore, context.home), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })
  return context
}
