import {createHash, randomBytes} from 'node:crypto'
import {link, mkdir, readFile, realpath, rename, rm, writeFile} from 'node:fs/promises'
import {connect, createServer, type Server} from 'node:net'
import {join} from 'node:path'

import {CleanroomError, messageOf} from '../errors/index.js'

/** The daemon that owns a state dir, as it tells whoever asks. */
export interface DaemonOwner {
  pid: number
  /** The unix socket it serves the API on. */
  socket: string
  version: string
  started_at: string
}

/** What a probe of a state dir's lock found: free, or held by a daemon (undefined when it did not say who it is in time). */
export type LockProbe = {held: false} | {held: true; owner: DaemonOwner | undefined}

/** The owner, for people and for a daemon too busy to answer the lock's probe. */
export const OWNER_FILE = 'daemon.json'
/** A random secret in the state dir: the lock's name cannot be guessed (and taken first) by another user. */
const KEY_FILE = 'daemon.key'
const PROBE_TIMEOUT_MS = 1000

/**
 * One daemon per state dir. Node has no flock: the lock is a unix socket bound in
 * the abstract namespace under a name derived from the state dir, which only one
 * process can bind and which the kernel releases when that process dies, however
 * it dies. Whoever connects to it is told the owner's pid, socket and version.
 */
export class StateLock {
  private constructor(
    private readonly server: Server,
    private readonly stateDir: string,
  ) {}

  /**
   * Takes the lock of `stateDir` for `owner` before anything else in it is read or
   * written, or throws daemon_already_running naming the daemon that holds it.
   * `onWarning` hears that the owner file could not be written (a full disk); the lock holds regardless.
   */
  static async acquire(stateDir: string, owner: DaemonOwner, onWarning: (message: string) => void = () => undefined): Promise<StateLock> {
    await mkdir(stateDir, {recursive: true, mode: 0o700})
    const name = await lockName(stateDir, await lockKey(stateDir, true))
    const server = createServer((socket) => {
      socket.on('error', () => undefined)
      socket.end(`${JSON.stringify(owner)}\n`)
    })
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject)
        server.listen(name, () => {
          server.off('error', reject)
          resolve()
        })
      })
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EADDRINUSE') throw error
      const probe = await probeStateLock(stateDir)
      throw alreadyRunning(stateDir, probe.held ? probe.owner : undefined)
    }
    server.unref()
    await writeOwnerFile(stateDir, owner).catch((error: unknown) => onWarning(`could not write ${join(stateDir, OWNER_FILE)}: ${messageOf(error)}`))
    return new StateLock(server, stateDir)
  }

  /** Releases the lock; the owner file goes first, so it never names the next owner's predecessor. */
  async release(): Promise<void> {
    await rm(join(this.stateDir, OWNER_FILE), {force: true}).catch(() => undefined)
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** Whether a daemon holds the lock of `stateDir`, and who it is. Reads nothing but the lock's key and, for a silent owner, the owner file. */
export async function probeStateLock(stateDir: string): Promise<LockProbe> {
  const key = await lockKey(stateDir, false)
  if (key === undefined) return {held: false}
  const answer = await askLock(await lockName(stateDir, key))
  if (answer === 'free') return {held: false}
  return {held: true, owner: answer === 'silent' ? await readOwnerFile(stateDir) : answer}
}

/** The lock's socket as /proc/net/unix names it (`@…`); undefined when no daemon ever ran on `stateDir`. */
export async function lockSocketName(stateDir: string): Promise<string | undefined> {
  const key = await lockKey(stateDir, false)
  return key === undefined ? undefined : `@${(await lockName(stateDir, key)).slice(1)}`
}

/** The text of daemon_already_running, shared by `serve` and the CLI. */
export function alreadyRunning(stateDir: string, owner: DaemonOwner | undefined): CleanroomError {
  const who = owner ? `pid ${owner.pid}, version ${owner.version}, listening on unix://${owner.socket}` : 'it did not say which one'
  return new CleanroomError('daemon_already_running', `another cleanroom daemon owns the state in ${stateDir} (${who}); one daemon serves a state dir`, {
    details: {state_dir: stateDir, owner: owner ?? null},
    suggestions: owner
      ? [`Use it: --host unix://${owner.socket}`, `Or stop it first: cleanroom serve stop --host unix://${owner.socket}`]
      : [`Stop it first: cleanroom serve stop`],
  })
}

async function lockName(stateDir: string, key: string): Promise<string> {
  const digest = createHash('sha256').update(`${await realpath(stateDir)}\0${key}`).digest('hex')
  return `\0cleanroom-state-${digest.slice(0, 40)}`
}

/** The state dir's lock key; made (atomically: two daemons starting at once agree on one) when `create`. */
async function lockKey(stateDir: string, create: true): Promise<string>
async function lockKey(stateDir: string, create: boolean): Promise<string | undefined>
async function lockKey(stateDir: string, create: boolean): Promise<string | undefined> {
  const path = join(stateDir, KEY_FILE)
  const existing = await readIfExists(path)
  if (existing !== undefined || !create) return existing
  const temp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`
  try {
    await writeFile(temp, `${randomBytes(16).toString('hex')}\n`, {mode: 0o600})
    await link(temp, path).catch((error: unknown) => {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    })
  } finally {
    await rm(temp, {force: true})
  }
  return (await readIfExists(path)) ?? ''
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return (await readFile(path, 'utf8')).trim()
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

/** Connects to the lock: refused means free; otherwise the owner says who it is, or stays silent (busy or hung). */
function askLock(name: string): Promise<DaemonOwner | 'free' | 'silent'> {
  return new Promise((resolve) => {
    const socket = connect(name)
    let text = ''
    const done = (answer: DaemonOwner | 'free' | 'silent') => {
      clearTimeout(timer)
      socket.destroy()
      resolve(answer)
    }
    const timer = setTimeout(() => done('silent'), PROBE_TIMEOUT_MS)
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('utf8')
    })
    socket.on('end', () => done(parseOwner(text) ?? 'silent'))
    socket.on('error', (error: NodeJS.ErrnoException) => done(error.code === 'ECONNREFUSED' || error.code === 'ENOENT' ? 'free' : 'silent'))
  })
}

async function readOwnerFile(stateDir: string): Promise<DaemonOwner | undefined> {
  return parseOwner((await readIfExists(join(stateDir, OWNER_FILE)).catch(() => undefined)) ?? '')
}

async function writeOwnerFile(stateDir: string, owner: DaemonOwner): Promise<void> {
  const path = join(stateDir, OWNER_FILE)
  const temp = `${path}.${process.pid}`
  try {
    await writeFile(temp, `${JSON.stringify(owner, null, 2)}\n`, {mode: 0o600})
    await rename(temp, path)
  } finally {
    await rm(temp, {force: true})
  }
}

function parseOwner(text: string): DaemonOwner | undefined {
  try {
    const value = JSON.parse(text) as Partial<DaemonOwner>
    const valid = Number.isSafeInteger(value.pid) && typeof value.socket === 'string' && typeof value.version === 'string' && typeof value.started_at === 'string'
    return valid ? (value as DaemonOwner) : undefined
  } catch {
    return undefined
  }
}
