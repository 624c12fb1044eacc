/**
 * What idle gvisor sandboxes cost the machine in memory (bench/gvisor.ts): per sandbox,
 * by host process, at several counts of sandboxes alive at once.
 */
import {readFile} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import {hostProcesses, runsBelow} from './proc-tree.js'

/** KiB by host process name: runsc-sandbox (the sentry), runsc-gofer, and the rest below runsc. */
export type ByProcess = Record<string, number>

export interface RunscMemory {
  /** Resident pages, each shared page counted in every process that maps it (the measure). */
  rss: ByProcess
  /** Resident pages, each shared page divided among the processes that map it. */
  pss: ByProcess
  /** Pss_Anon + Pss_Shmem: the pages only sandboxes hold (heaps, the sentry's memory file), no runsc binary text. */
  privateKib: ByProcess
  /** Whether the processes were those of the sandboxes asked for (found by their cgroups), not every runsc process. */
  bySandbox: boolean
}

export interface IdleMemory {
  sandboxes: number
  /** Counted from these sandboxes' processes (by their cgroups), not from every runsc process before and after. */
  bySandbox: boolean
  /** Per sandbox: the growth of each measure from before the sandboxes to after, divided by their number; `total` sums the processes. */
  rss: ByProcess
  pss: ByProcess
  privateKib: ByProcess
  /** Per sandbox: how much /proc/meminfo's MemAvailable dropped (page cache, kernel memory and all). */
  memAvailableDropKib: number
}

/** The memory goal, as the issue states it: RSS per idle sandbox, the sentry and the gofer included. */
export const RSS_GOAL_MIB = 40

/**
 * Makes sandboxes (with `create`, which returns the id) until `counts[i]` are alive, for
 * each count in turn, and measures after each once they have settled; the caller removes
 * them. Only the processes in these sandboxes' cgroups count (others may run gVisor on the
 * machine too); without cgroups, every runsc process, as the difference of two readings.
 */
export async function idleMemory(counts: readonly number[], create: () => Promise<string>): Promise<IdleMemory[]> {
  const ids = new Set<string>()
  const [before, availableBefore] = await Promise.all([runscMemory(ids), memAvailableKib()])
  const results: IdleMemory[] = []
  for (const count of counts) {
    while (ids.size < count) ids.add(await create())
    await sleep(2000)
    const [after, availableAfter] = await Promise.all([runscMemory(ids), memAvailableKib()])
    // Found by their cgroups, they are all there is: nothing to take away.
    const base: RunscMemory = after.bySandbox ? {rss: {}, pss: {}, privateKib: {}, bySandbox: true} : before
    const perSandbox = (field: keyof Omit<RunscMemory, 'bySandbox'>): ByProcess => {
      const names = new Set([...Object.keys(base[field]), ...Object.keys(after[field])])
      const values = Object.fromEntries([...names].map((name) => [name, ((after[field][name] ?? 0) - (base[field][name] ?? 0)) / count]))
      return {...values, total: Object.values(values).reduce((sum, value) => sum + value, 0)}
    }
    results.push({sandboxes: count, bySandbox: after.bySandbox, rss: perSandbox('rss'), pss: perSandbox('pss'), privateKib: perSandbox('privateKib'), memAvailableDropKib: (availableBefore - availableAfter) / count})
  }
  return results
}

/**
 * RSS, PSS and private memory of every runsc process and what runs below it, from
 * /proc/PID/smaps_rollup, by name (runsc, runsc-sandbox, runsc-gofer; the systrap stubs
 * and nsinit as one): of the sandboxes `ids` names, by their cgroups, when any process
 * is in one of them; else of every one on the machine.
 */
export async function runscMemory(ids: ReadonlySet<string>): Promise<RunscMemory> {
  const processes = await hostProcesses()
  const ours = new Set([...processes].filter(([, host]) => [...ids].some((id) => host.cgroup.includes(`/${id}\n`))).map(([pid]) => pid))
  const memory: RunscMemory = {rss: {}, pss: {}, privateKib: {}, bySandbox: ours.size > 0}
  for (const [pid, host] of processes) {
    if (!runsBelow(processes, pid, (name) => name.startsWith('runsc')) || (ours.size > 0 && !ours.has(pid))) continue
    const rollup = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '')
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(rollup)?.[1] ?? 0)
    const name = host.name.startsWith('runsc') ? host.name : 'other (stubs, nsinit)'
    memory.rss[name] = (memory.rss[name] ?? 0) + field('Rss')
    memory.pss[name] = (memory.pss[name] ?? 0) + field('Pss')
    memory.privateKib[name] = (memory.privateKib[name] ?? 0) + field('Pss_Anon') + field('Pss_Shmem')
  }
  return memory
}

async function memAvailableKib(): Promise<number> {
  return Number(/^MemAvailable:\s+(\d+) kB/m.exec(await readFile('/proc/meminfo', 'utf8'))?.[1] ?? Number.NaN)
}

/** The lines `renderGvisorBench` prints for one count of idle sandboxes. */
export function renderIdleMemory(memory: IdleMemory): string[] {
  const mib = (kib: number) => `${(kib / 1024).toFixed(1)} MiB`.padStart(9)
  const counted = memory.bySandbox ? 'their processes, found by their cgroups' : 'every runsc process, before and after'
  const lines = [`## gvisor: memory per idle sandbox (${memory.sandboxes} sandboxes; ${counted})`]
  for (const name of Object.keys(memory.rss)) {
    lines.push(`  ${name.padEnd(24)} RSS ${mib(memory.rss[name]!)}  PSS ${mib(memory.pss[name] ?? 0)}  anon+shmem ${mib(memory.privateKib[name] ?? 0)}`)
  }
  lines.push(`  MemAvailable dropped by ${mib(memory.memAvailableDropKib).trim()} per sandbox (machine-wide: whatever else runs moves it too)`)
  const total = memory.rss.total! / 1024
  lines.push(`  goal: RSS <= ${RSS_GOAL_MIB} MiB per idle sandbox, sentry and gofer included (measured ${total.toFixed(1)} MiB): ${total <= RSS_GOAL_MIB ? 'MET' : 'MISSED'}`)
  return lines
}
