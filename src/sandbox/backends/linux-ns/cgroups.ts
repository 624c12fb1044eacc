import {readdir, readFile, rmdir, stat, writeFile} from 'node:fs/promises'
import {mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {CleanroomError, messageOf} from '../../../errors/index.js'
import {pollUntil} from '../../../util/poll.js'
import {SANDBOX_ID_PATTERN} from '../../ids.js'
import type {SandboxLimits} from '../../resources.js'
import {CGROUP_PARENT, type CgroupHost, type Controller, LIMIT_CONTROLLERS, limitWrites} from './cgroup-host.js'

/** A sandbox's cgroup: one directory per controller (all the same with v2). Recorded in the runtime. */
export interface SandboxCgroup {
  version: 1 | 2
  dirs: Partial<Record<Controller, string>>
}

const EMPTY_WAIT_MS = 5000
/** An empty cgroup nobody claims is left alone this long: its sandbox may be starting. */
const ORPHAN_AGE_MS = 60_000

export function sandboxCgroupOf(host: CgroupHost, sandboxId: string): SandboxCgroup {
  const dirs: Partial<Record<Controller, string>> = {}
  for (const [controller, root] of Object.entries(host.roots) as [Controller, string][]) dirs[controller] = join(root, CGROUP_PARENT, sandboxId)
  return {version: host.version, dirs}
}

/** The distinct directories of a cgroup, each to be joined and removed once. */
export function cgroupDirs(cgroup: SandboxCgroup): string[] {
  return [...new Set(Object.values(cgroup.dirs))]
}

/**
 * Creates the sandbox's cgroup with its limits set, before any of its processes exists
 * (nsinit joins it first thing). On failure nothing is left behind. Synchronous calls:
 * cgroupfs is in memory, and a dozen of them take less time than one trip through the
 * thread pool, which a create under way keeps busy.
 */
export async function createSandboxCgroup(host: CgroupHost, sandboxId: string, limits: SandboxLimits): Promise<SandboxCgroup> {
  const cgroup = sandboxCgroupOf(host, sandboxId)
  const made: string[] = []
  try {
    for (const root of new Set(Object.values(host.roots))) {
      try {
        mkdirSync(join(root, CGROUP_PARENT), {mode: 0o755})
      } catch (error) {
        ignoreExisting(error as NodeJS.ErrnoException)
      }
      if (host.version === 2) enableControllers(root)
    }
    for (const dir of cgroupDirs(cgroup)) {
      mkdirSync(dir, {mode: 0o755})
      made.push(dir)
    }
    for (const write of limitWrites(host.version, limits)) {
      const file = join(cgroup.dirs[write.controller]!, write.file)
      try {
        writeFileSync(file, write.value)
      } catch (error) {
        if (write.optional && (error as NodeJS.ErrnoException).code === 'ENOENT') continue
        throw new Error(`${file} = ${write.value}: ${messageOf(error)}`)
      }
    }
    return cgroup
  } catch (error) {
    await Promise.all(made.map((dir) => rmdir(dir).catch(() => undefined)))
    throw new CleanroomError('backend_failed', `could not set up the sandbox's cgroup: ${messageOf(error)}`, {cause: error})
  }
}

/** v2 hands controllers down only where each ancestor enables them for its children. */
function enableControllers(root: string): void {
  const wanted = LIMIT_CONTROLLERS.map((name) => `+${name}`).join(' ')
  for (const dir of [root, join(root, CGROUP_PARENT)]) {
    const enabled = readFileSync(join(dir, 'cgroup.subtree_control'), 'utf8').trim().split(/\s+/)
    if (LIMIT_CONTROLLERS.every((name) => enabled.includes(name))) continue
    writeFileSync(join(dir, 'cgroup.subtree_control'), wanted)
  }
}

/** Pids in the cgroup (any of its directories). */
export async function cgroupProcesses(cgroup: SandboxCgroup): Promise<number[]> {
  const lists = await Promise.all(cgroupDirs(cgroup).map((dir) => readFile(join(dir, 'cgroup.procs'), 'utf8').catch(() => '')))
  return [...new Set(lists.flatMap((text) => text.split('\n').filter(Boolean).map(Number)))]
}

/**
 * Removes the cgroup once its last process is gone (exec relays outside the sandbox's
 * pid namespace exit just after its init). Bounded: a cgroup still busy then is left
 * for a later sweep. Never fails for a cgroup that is gone already.
 */
export async function removeSandboxCgroup(cgroup: SandboxCgroup): Promise<boolean> {
  return pollUntil(async () => {
    const left = await Promise.all(cgroupDirs(cgroup).map((dir) => rmdir(dir).then(() => false, (error: NodeJS.ErrnoException) => error.code !== 'ENOENT')))
    return !left.includes(true)
  }, EMPTY_WAIT_MS)
}

/** Stops every process of the sandbox where it is (they keep their memory and files), and waits until they are. */
export async function freezeSandboxCgroup(cgroup: SandboxCgroup): Promise<void> {
  await setFrozen(cgroup, true)
}

/** Lets a frozen sandbox run again (at terminate: a frozen process cannot die on v1). */
export async function thawSandboxCgroup(cgroup: SandboxCgroup): Promise<void> {
  await setFrozen(cgroup, false)
}

async function setFrozen(cgroup: SandboxCgroup, frozen: boolean): Promise<void> {
  const dir = cgroup.dirs.freezer
  if (dir === undefined) return
  const [file, value] = cgroup.version === 2 ? ['cgroup.freeze', frozen ? '1' : '0'] : ['freezer.state', frozen ? 'FROZEN' : 'THAWED']
  await writeFile(join(dir, file), value).catch(ignoreMissing)
  await pollUntil(async () => (await isFrozen(cgroup)) === frozen, EMPTY_WAIT_MS)
}

export async function isFrozen(cgroup: SandboxCgroup): Promise<boolean> {
  const dir = cgroup.dirs.freezer
  if (dir === undefined) return false
  if (cgroup.version === 2) return /^frozen 1$/m.test(await readFile(join(dir, 'cgroup.events'), 'utf8').catch(() => ''))
  return (await readFile(join(dir, 'freezer.state'), 'utf8').catch(() => '')).trim() === 'FROZEN'
}

/** CPU time the cgroup's processes have used so far (any unit; it only tells idle from busy), if the host accounts it. */
export async function cpuTimeUsed(cgroup: SandboxCgroup): Promise<number | undefined> {
  if (cgroup.version === 2) {
    const text = await readFile(join(cgroup.dirs.cpu!, 'cpu.stat'), 'utf8').catch(() => '')
    const usage = /^usage_usec (\d+)$/m.exec(text)?.[1]
    return usage === undefined ? undefined : Number(usage)
  }
  if (cgroup.dirs.cpuacct === undefined) return undefined
  const text = await readFile(join(cgroup.dirs.cpuacct, 'cpuacct.usage'), 'utf8').catch(() => '')
  return text.trim() === '' ? undefined : Number(text)
}

/**
 * Removes sandbox cgroups left behind (a daemon killed before it could remove them):
 * those with no process, whose sandbox `isClaimed` does not name, and that are older
 * than a start-up takes. A cgroup with a process in it is never touched (the kernel
 * refuses to remove it anyway). Returns the ids removed.
 */
export async function sweepSandboxCgroups(host: CgroupHost, isClaimed: (sandboxId: string) => boolean, minAgeMs = ORPHAN_AGE_MS): Promise<string[]> {
  const ids = new Set<string>()
  for (const root of new Set(Object.values(host.roots))) {
    for (const name of await readdir(join(root, CGROUP_PARENT)).catch(() => [])) if (SANDBOX_ID_PATTERN.test(name) && !isClaimed(name)) ids.add(name)
  }
  const removed: string[] = []
  for (const id of ids) {
    const cgroup = sandboxCgroupOf(host, id)
    const ages = await Promise.all(cgroupDirs(cgroup).map((dir) => stat(dir).then((stats) => Math.max(0, Date.now() - stats.ctimeMs), () => Number.POSITIVE_INFINITY)))
    if (ages.some((age) => age < minAgeMs)) continue
    const procs = await Promise.all(cgroupDirs(cgroup).map((dir) => readFile(join(dir, 'cgroup.procs'), 'utf8').catch((error: NodeJS.ErrnoException) => (error.code === 'ENOENT' ? '' : 'unknown'))))
    if (procs.some((text) => text.trim() !== '')) continue
    await Promise.all(cgroupDirs(cgroup).map((dir) => rmdir(dir).catch(() => undefined)))
    removed.push(id)
  }
  return removed
}

function ignoreExisting(error: NodeJS.ErrnoException): void {
  if (error.code !== 'EEXIST') throw error
}

function ignoreMissing(error: NodeJS.ErrnoException): void {
  if (error.code !== 'ENOENT') throw error
}
