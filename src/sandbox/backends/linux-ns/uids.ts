import {randomInt} from 'node:crypto'
import {chmod, chown, lstat, mkdir, open, readdir, readFile, rename, unlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../../errors/index.js'
import {processIds} from '../../../util/proc.js'
import {withHostLock} from './host-lock.js'
import {isRunning, processFacts, processStatusHead} from './runtime.js'

/**
 * Host uids reserved for sandboxes of a root daemon, one per sandbox, used as uid and
 * gid. Not real accounts; distinct per sandbox so an escaped sandbox cannot read another's state.
 */
export const HOST_UID_RANGE = {first: 200_000, last: 265_535} as const

/** The machine-wide registry: one file per claimed uid, shared by every daemon whatever its state dir. */
export const UID_REGISTRY = '/run/cleanroom/uids'

/** What a claim file (`<registry>/<uid>`) holds. */
export interface UidClaim {
  uid: number
  sandbox_id: string
  state_dir: string
  /** The daemon that claimed it: pid and start time (clock ticks since boot), never a recycled pid. */
  daemon_pid: number
  daemon_start_time: number
  claimed_at: string
}

/** A claim whose daemon is gone and whose uid runs no process: its sandbox is gone too. */
export interface StaleClaim {
  uid: number
  /** Undefined when the file could not be read as a claim. */
  claim?: UidClaim
}

/** An unreadable claim file younger than this may be one being written right now. */
const UNREADABLE_GRACE_MS = 60_000

/**
 * Claims a host uid for a sandbox, machine-wide: a uid with a claim file (created with
 * O_EXCL, so two daemons can never both create one) or with any live process is never
 * handed out. Then makes `stateDir` `root:U 0710`, so only U may traverse it.
 */
export async function claimHostUid(sandboxId: string, stateDir: string, options: UidRegistryOptions = {}): Promise<number> {
  const uid = await claimFreeUid(sandboxId, stateDir, options)
  await admit(stateDir, uid)
  return uid
}

/** Where uids are claimed: the machine-wide registry and range, unless a test gives its own. */
export interface UidRegistryOptions {
  registry?: string
  range?: {first: number; last: number}
}

/** The sandbox id and state dir of a claim made ahead of its sandbox (uid-reserve.ts): no sandbox's, no dir. */
export const RESERVED = ''

/**
 * Claims a free uid in the daemon's name for no sandbox yet (RESERVED): to the registry it
 * is a claim like any other, released with `releaseHostUid(uid, RESERVED)` and swept as
 * stale once the daemon is gone and nothing runs as it.
 */
export async function reserveHostUid(options: UidRegistryOptions = {}): Promise<number> {
  return claimFreeUid(RESERVED, RESERVED, options)
}

/**
 * Makes the daemon's reserved claim of `uid` the sandbox's (replaced in one rename, so a
 * reader sees one claim or the other) and admits it to `stateDir`. False, with nothing
 * changed, when the claim is not this daemon's reservation any more.
 */
export async function takeReservedUid(uid: number, sandboxId: string, stateDir: string, {registry = UID_REGISTRY}: UidRegistryOptions = {}): Promise<boolean> {
  const self = await daemonIdentity()
  const path = join(registry, String(uid))
  const held = await readClaim(path)
  if (held?.sandbox_id !== RESERVED || held.daemon_pid !== self.pid || held.daemon_start_time !== self.startTime) return false
  // Not a claim's name (digits only): a leftover of a crash in between is never read as one.
  const next = join(registry, `.${uid}.${sandboxId}`)
  const claim: UidClaim = {...held, sandbox_id: sandboxId, state_dir: stateDir, claimed_at: new Date().toISOString()}
  try {
    await writeFile(next, `${JSON.stringify(claim)}\n`, {mode: 0o600, flag: 'wx'})
    await rename(next, path)
  } catch (error) {
    await unlink(next).catch(() => undefined)
    throw error
  }
  await admit(stateDir, uid)
  return true
}

/** `stateDir` becomes `root:U 0710`: only U may traverse it. */
async function admit(stateDir: string, uid: number): Promise<void> {
  await chown(stateDir, 0, uid)
  await chmod(stateDir, 0o710)
}

async function claimFreeUid(sandboxId: string, stateDir: string, {registry = UID_REGISTRY, range = HOST_UID_RANGE}: UidRegistryOptions): Promise<number> {
  await openRegistry(registry)
  const [claimed, busy, self] = await Promise.all([claimedUids(registry), uidsWithProcesses(), daemonIdentity()])
  const size = range.last - range.first + 1
  // A random start keeps a just-released uid from coming straight back.
  const start = randomInt(size)
  for (let step = 0; step < size; step++) {
    const uid = range.first + ((start + step) % size)
    if (claimed.has(uid) || busy.has(uid)) continue
    const claim: UidClaim = {uid, sandbox_id: sandboxId, state_dir: stateDir, daemon_pid: self.pid, daemon_start_time: self.startTime, claimed_at: new Date().toISOString()}
    if (await createClaim(registry, claim)) return uid
  }
  throw new CleanroomError('backend_failed', `every host uid from ${range.first} to ${range.last} is claimed in ${registry} or runs a process`, {
    suggestions: ['Remove sandboxes you no longer need: cleanroom sandbox ls --all'],
  })
}

/** Gives the uid back at terminate, if the claim is still the one this sandbox made (after a reclaim it may be another's). */
export async function releaseHostUid(uid: number, stateDir: string, registry = UID_REGISTRY): Promise<void> {
  await withHostLock(registry, `the uid registry ${registry}`, async () => {
    const claim = await readClaim(join(registry, String(uid)))
    if (claim?.state_dir === stateDir) await unlink(join(registry, String(uid))).catch(ignoreMissing)
  })
}

/**
 * Removes the claims left by daemons that are gone and whose uid runs no process any
 * more (their sandboxes died with or after them), and returns them. A state dir such a
 * claim names that is still `root:U` becomes `root:root 0700`, so the uid's next sandbox
 * cannot enter it. A claim whose uid still runs a process is never removed.
 */
export async function reclaimStaleUids(registry = UID_REGISTRY): Promise<StaleClaim[]> {
  if (!(await lstat(registry).catch(() => undefined))) return []
  return withHostLock(registry, `the uid registry ${registry}`, async () => {
    const busy = await uidsWithProcesses()
    const stale: StaleClaim[] = []
    for (const uid of await claimedUids(registry)) {
      if (busy.has(uid)) continue
      const path = join(registry, String(uid))
      const claim = await readClaim(path)
      if (claim ? await isRunning(claim.daemon_pid, claim.daemon_start_time) : await isRecent(path)) continue
      if (claim) await lockOutOf(claim.state_dir, uid)
      await unlink(path).catch(ignoreMissing)
      stale.push(claim ? {uid, claim} : {uid})
    }
    return stale
  })
}

/** The sandbox ids of every claim in the registry. */
export async function claimedSandboxIds(registry = UID_REGISTRY): Promise<Set<string>> {
  const uids = await claimedUids(registry).catch(() => new Set<number>())
  const claims = await Promise.all([...uids].map((uid) => readClaim(join(registry, String(uid)))))
  return new Set(claims.flatMap((claim) => (claim ? [claim.sandbox_id] : [])))
}

/** Creates the registry (root-only) or checks that the existing one is root's alone. */
async function openRegistry(registry: string): Promise<void> {
  await mkdir(registry, {recursive: true, mode: 0o700})
  const stats = await lstat(registry)
  if (!stats.isDirectory() || stats.uid !== 0 || (stats.mode & 0o022) !== 0) {
    throw new CleanroomError('backend_failed', `the uid registry ${registry} must be a directory owned by root and writable by root only`, {
      suggestions: [`Check who made it: ls -ld ${registry}; then: chown root:root ${registry} && chmod 0700 ${registry}`],
    })
  }
}

async function createClaim(registry: string, claim: UidClaim): Promise<boolean> {
  let file
  try {
    file = await open(join(registry, String(claim.uid)), 'wx', 0o600)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
  try {
    await file.writeFile(`${JSON.stringify(claim)}\n`)
  } finally {
    await file.close()
  }
  return true
}

async function claimedUids(registry: string): Promise<Set<number>> {
  const names = await readdir(registry)
  return new Set(names.filter((name) => /^\d+$/.test(name)).map(Number).filter((uid) => uid >= HOST_UID_RANGE.first && uid <= HOST_UID_RANGE.last))
}

async function readClaim(path: string): Promise<UidClaim | undefined> {
  try {
    const claim = JSON.parse(await readFile(path, 'utf8')) as Partial<UidClaim>
    const counts = [claim.uid, claim.daemon_pid, claim.daemon_start_time]
    if (counts.every((value) => Number.isSafeInteger(value)) && typeof claim.state_dir === 'string' && typeof claim.sandbox_id === 'string') return claim as UidClaim
  } catch {
    // missing, or not a claim
  }
  return undefined
}

async function isRecent(path: string): Promise<boolean> {
  const stats = await lstat(path).catch(() => undefined)
  return stats !== undefined && Date.now() - stats.mtimeMs < UNREADABLE_GRACE_MS
}

async function lockOutOf(stateDir: string, uid: number): Promise<void> {
  const stats = await lstat(stateDir).catch(() => undefined)
  if (!stats?.isDirectory() || stats.gid !== uid) return
  await chown(stateDir, 0, 0)
  await chmod(stateDir, 0o700)
}

/**
 * Every uid of the sandbox range that a process on this machine runs as (real,
 * effective, saved or filesystem uid), read from each process's status. A zombie
 * runs nothing and holds nothing: it does not count.
 */
export async function uidsWithProcesses(): Promise<Set<number>> {
  const pids = await processIds()
  const busy = new Set<number>()
  await Promise.all(
    pids.map(async (pid) => {
      const status = await processStatusHead(pid).catch(() => '')
      if (/^State:\s+Z/m.test(status)) return
      const ids = /^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)/m.exec(status)
      for (const id of ids?.slice(1) ?? []) {
        const uid = Number(id)
        if (uid >= HOST_UID_RANGE.first && uid <= HOST_UID_RANGE.last) busy.add(uid)
      }
    }),
  )
  return busy
}

let identity: Promise<{pid: number; startTime: number}> | undefined

function daemonIdentity(): Promise<{pid: number; startTime: number}> {
  identity ??= processFacts(process.pid).then((facts) => {
    if (!facts) throw new Error('cannot read this process in /proc')
    return {pid: process.pid, startTime: facts.startTime}
  })
  return identity
}

function ignoreMissing(error: unknown): void {
  if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
}
