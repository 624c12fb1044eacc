/**
 * The machine's processes as /proc shows them, for the memory figures (bench/backends.ts,
 * bench/gvisor-memory.ts): which sandbox processes run, found by what they run below.
 */
import {readFile} from 'node:fs/promises'

import {processIds} from '../src/util/proc.js'

export interface HostProcess {
  ppid: number
  /** The last part of argv[0] (what runsc calls its kernel and gofer), else the kernel's name for it. */
  name: string
  /** /proc/PID/cgroup, as text. */
  cgroup: string
  rssKib: number
}

/** Every process on the machine, by pid; one that ends while it is read is left out. */
export async function hostProcesses(): Promise<Map<number, HostProcess>> {
  const processes = new Map<number, HostProcess>()
  for (const entry of await processIds()) {
    const [status = '', cmdline = '', cgroup = ''] = await Promise.all(['status', 'cmdline', 'cgroup'].map((file) => readFile(`/proc/${entry}/${file}`, 'utf8').catch(() => '')))
    if (status === '') continue
    processes.set(Number(entry), {
      ppid: Number(/^PPid:\s+(\d+)/m.exec(status)?.[1] ?? 0),
      name: (cmdline.split('\0')[0] ?? '').split('/').at(-1) || /^Name:\s+(\S+)/m.exec(status)?.[1] || '?',
      cgroup,
      rssKib: Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? 0),
    })
  }
  return processes
}

/** Whether `pid` or one of its ancestors (below pid 1) is one `isRoot` takes, by its name or its pid. */
export function runsBelow(processes: ReadonlyMap<number, HostProcess>, pid: number, isRoot: (name: string, pid: number) => boolean): boolean {
  for (let current: number | undefined = pid; current !== undefined && current > 1; current = processes.get(current)?.ppid) {
    if (isRoot(processes.get(current)?.name ?? '', current)) return true
  }
  return false
}
