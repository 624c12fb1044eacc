import {accessSync, constants, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {parseMountinfo} from '../../../util/mountinfo.js'
import type {SandboxLimits} from '../../resources.js'

/** The controllers a sandbox's limits need; v1 also needs freezer (v2 has cgroup.freeze). cpuacct (v1) only tells idle from busy. */
export const LIMIT_CONTROLLERS = ['pids', 'memory', 'cpu'] as const
export type Controller = (typeof LIMIT_CONTROLLERS)[number] | 'freezer' | 'cpuacct'

/** Where this machine's cgroup hierarchies are mounted. */
export interface CgroupMounts {
  /** The cgroup2 mount, if any. */
  v2?: string
  /** Each v1 controller's mount (co-mounted controllers share one). */
  v1: Map<string, string>
}

/** How sandboxes are limited on this machine: one cgroup2 directory, or one v1 hierarchy per controller. */
export interface CgroupHost {
  version: 1 | 2
  /** The hierarchy root of each controller used (all the same directory with v2). */
  roots: Partial<Record<Controller, string>>
}

export type CgroupProbe = {ok: true; host: CgroupHost} | {ok: false; problem: string}

/** The directory under each hierarchy that holds one cgroup per sandbox (`<root>/cleanroom/<sandbox id>`). */
export const CGROUP_PARENT = 'cleanroom'

/** The cgroup mounts in /proc/self/mountinfo text (the first mount of each hierarchy). */
export function findCgroupMounts(mountinfo: string): CgroupMounts {
  const mounts: CgroupMounts = {v1: new Map()}
  for (const {fsType, mountPoint, superOptions} of parseMountinfo(mountinfo)) {
    if (fsType === 'cgroup2') mounts.v2 ??= mountPoint
    if (fsType !== 'cgroup') continue
    for (const option of superOptions.split(',')) {
      if (option !== 'rw' && option !== 'ro' && !option.includes('=') && !mounts.v1.has(option)) mounts.v1.set(option, mountPoint)
    }
  }
  return mounts
}

/**
 * Picks the hierarchy: cgroup v2 when its root offers pids, memory and cpu, else v1 when
 * it has pids, memory, cpu and freezer hierarchies (hybrid hosts keep those on v1).
 */
export function chooseCgroupHost(mounts: CgroupMounts, v2Controllers: readonly string[] | undefined): CgroupProbe {
  if (mounts.v2 !== undefined && LIMIT_CONTROLLERS.every((name) => v2Controllers?.includes(name))) {
    const root = mounts.v2
    return {ok: true, host: {version: 2, roots: {pids: root, memory: root, cpu: root, freezer: root}}}
  }
  const needed: Controller[] = [...LIMIT_CONTROLLERS, 'freezer']
  const missing = needed.filter((name) => !mounts.v1.has(name))
  if (missing.length === 0) {
    const roots: Partial<Record<Controller, string>> = {}
    for (const name of [...needed, 'cpuacct'] as Controller[]) if (mounts.v1.has(name)) roots[name] = mounts.v1.get(name)
    return {ok: true, host: {version: 1, roots}}
  }
  const v2 = mounts.v2 === undefined ? 'no cgroup2 mount' : `cgroup2 at ${mounts.v2} offers ${v2Controllers?.join(' ') || 'no controllers'}`
  return {ok: false, problem: `no cgroup hierarchy offers pids, memory and cpu: ${v2}, and cgroup v1 lacks ${missing.join(', ')}`}
}

/** What a daemon in this process can do with cgroups; read-only, a few small reads. */
export function probeCgroups(): CgroupProbe {
  const uid = process.geteuid?.() ?? -1
  if (uid !== 0) return {ok: false, problem: `only a root daemon can create cgroups, and this one runs as uid ${uid}`}
  let mounts: CgroupMounts
  try {
    mounts = findCgroupMounts(readFileSync('/proc/self/mountinfo', 'utf8'))
  } catch (error) {
    return {ok: false, problem: `cannot read /proc/self/mountinfo: ${(error as Error).message}`}
  }
  const v2Controllers = mounts.v2 === undefined ? undefined : readWords(join(mounts.v2, 'cgroup.controllers'))
  const chosen = chooseCgroupHost(mounts, v2Controllers)
  if (!chosen.ok) return chosen
  for (const root of new Set(Object.values(chosen.host.roots))) {
    try {
      accessSync(root, constants.W_OK)
    } catch {
      return {ok: false, problem: `the cgroup hierarchy ${root} is not writable (mounted read-only?)`}
    }
  }
  return chosen
}

/** One value to write into a sandbox's cgroup; `optional` files may be missing (no swap accounting, no CFS quota). */
export interface CgroupWrite {
  controller: Controller
  file: string
  value: string
  optional?: boolean
}

const CFS_PERIOD_US = 100_000

/** The files that set `limits`, in the order they must be written (v1: memory before memory+swap). */
export function limitWrites(version: 1 | 2, limits: SandboxLimits): CgroupWrite[] {
  const quota = limits.vcpus === null ? undefined : Math.max(1000, Math.round(limits.vcpus * CFS_PERIOD_US))
  if (version === 2) {
    return [
      {controller: 'pids', file: 'pids.max', value: limits.pids === null ? 'max' : String(limits.pids)},
      {controller: 'memory', file: 'memory.max', value: limits.memory_bytes === null ? 'max' : String(limits.memory_bytes)},
      // Swap would let the sandbox hold more than its memory limit.
      ...(limits.memory_bytes === null ? [] : [{controller: 'memory' as const, file: 'memory.swap.max', value: '0', optional: true}]),
      {controller: 'cpu', file: 'cpu.weight', value: String(limits.cpu_weight)},
      {controller: 'cpu', file: 'cpu.max', value: `${quota ?? 'max'} ${CFS_PERIOD_US}`},
    ]
  }
  const memory = limits.memory_bytes === null ? '-1' : String(limits.memory_bytes)
  return [
    {controller: 'pids', file: 'pids.max', value: limits.pids === null ? 'max' : String(limits.pids)},
    {controller: 'memory', file: 'memory.limit_in_bytes', value: memory},
    // memory+swap equal to memory: no swap at all (present only with swap accounting).
    {controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: memory, optional: true},
    // v1 shares: 1024 is the default, as weight 100 is on v2.
    {controller: 'cpu', file: 'cpu.shares', value: String(Math.max(2, Math.round((limits.cpu_weight * 1024) / 100)))},
    // Without CFS bandwidth control there is no quota to set, which is fine only when none is asked for.
    {controller: 'cpu', file: 'cpu.cfs_period_us', value: String(CFS_PERIOD_US), optional: quota === undefined},
    {controller: 'cpu', file: 'cpu.cfs_quota_us', value: quota === undefined ? '-1' : String(quota), optional: quota === undefined},
  ]
}

function readWords(path: string): string[] | undefined {
  try {
    return readFileSync(path, 'utf8').trim().split(/\s+/).filter(Boolean)
  } catch {
    return undefined
  }
}
