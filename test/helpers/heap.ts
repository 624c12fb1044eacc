import {readdir, readFile, rm} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {DaemonClient} from '../../src/client/client.js'

/** Node options that let a test ask a daemon for a heap snapshot (SIGUSR2), written into `dir`. */
export function heapSnapshotOptions(dir: string): string[] {
  return ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${dir}`]
}

/**
 * Has the daemon write a heap snapshot (a full GC first, so only live objects are in it) and
 * returns how many live objects and closures it holds of each constructor name.
 */
export async function liveObjectCounts(pid: number, client: DaemonClient, dir: string): Promise<Map<string, number>> {
  const known = new Set(await readdir(dir))
  process.kill(pid, 'SIGUSR2')
  const deadline = Date.now() + 60_000
  for (;;) {
    // The snapshot is written on the daemon's main thread: once it answers again and the file parses, it is whole.
    const file = (await readdir(dir)).find((name) => name.endsWith('.heapsnapshot') && !known.has(name))
    if (file !== undefined && (await client.ping().then(() => true, () => false))) {
      const counts = await readFile(join(dir, file), 'utf8').then(countsOf, () => undefined)
      if (counts !== undefined) {
        await rm(join(dir, file), {force: true})
        return counts
      }
    }
    if (Date.now() > deadline) throw new Error(`the daemon (pid ${pid}) wrote no heap snapshot into ${dir} within 60 s`)
    await sleep(100)
  }
}

interface Snapshot {
  snapshot: {meta: {node_fields: string[]; node_types: [string[]]}}
  nodes: number[]
  strings: string[]
}

function countsOf(text: string): Map<string, number> {
  const parsed = JSON.parse(text) as Snapshot
  const fields = parsed.snapshot.meta.node_fields
  const typeAt = fields.indexOf('type')
  const nameAt = fields.indexOf('name')
  const types = parsed.snapshot.meta.node_types[0]
  const counts = new Map<string, number>()
  for (let i = 0; i < parsed.nodes.length; i += fields.length) {
    const type = types[parsed.nodes[i + typeAt] ?? -1]
    if (type !== 'object' && type !== 'closure') continue
    const name = `${type} ${parsed.strings[parsed.nodes[i + nameAt] ?? -1] || '(anonymous)'}`
    counts.set(name, (counts.get(name) ?? 0) + 1)
  }
  return counts
}

/** The constructors with at least `least` more live objects in `after` than in `before`, with how many more. */
export function grownBy(before: Map<string, number>, after: Map<string, number>, least: number): Record<string, number> {
  const grown: Record<string, number> = {}
  for (const [name, count] of after) {
    const more = count - (before.get(name) ?? 0)
    if (more >= least) grown[name] = more
  }
  return grown
}
