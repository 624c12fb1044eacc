import {lstat, readdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import type {SandboxRecord} from '../../sandbox/types.js'
import {cacheLayout} from './layout.js'
import {type EntryUsage, listEntries, readIndex, removeEntry, removeStaging} from './store.js'

/** `system df`'s view of the shared agent cache: one more kind of cache, on the host. */
export interface AgentCacheUsage {
  kind: 'agents'
  path: string
  /** Everything under the cache directory. */
  bytes: number
  entries: EntryUsage[]
}

export async function agentCacheUsage(root: string): Promise<AgentCacheUsage> {
  const {entries, bytes} = await listEntries(cacheLayout(root))
  return {kind: 'agents', path: root, bytes, entries}
}

/** The entries live sandboxes have mounted: never removed, whatever their age. */
export function entriesInUse(records: readonly SandboxRecord[]): Set<string> {
  return new Set(records.flatMap((record) => (record.status !== 'stopped' && record.agent_package ? [record.agent_package.entry] : [])))
}

export interface AgentCachePrune {
  removed: EntryUsage[]
  kept: (EntryUsage & {reason: string})[]
  reclaimed_bytes: number
}

/** A fetch that left its directory in staging this long ago was cut short (its daemon died). */
const STAGING_LEFTOVER_MS = 86_400_000

/**
 * `system prune` for the shared agent cache: removes the entries no live sandbox
 * has mounted that were not used since `olderThanMs` ago, with the index records
 * that lead to them, and fetches cut short. A mounted entry is never touched:
 * its files are the ones a running agent reads.
 */
export async function pruneAgentCache(root: string, options: {inUse: ReadonlySet<string>; olderThanMs: number; dryRun: boolean; now?: number}): Promise<AgentCachePrune> {
  const layout = cacheLayout(root)
  const now = options.now ?? Date.now()
  const cutOff = now - options.olderThanMs
  const report: AgentCachePrune = {removed: [], kept: [], reclaimed_bytes: 0}
  const {entries} = await listEntries(layout)
  for (const entry of entries) {
    if (options.inUse.has(entry.entry)) report.kept.push({...entry, reason: 'a sandbox has it mounted'})
    else if (Date.parse(entry.last_used_at) > cutOff) report.kept.push({...entry, reason: 'used recently'})
    else report.removed.push(entry)
  }
  if (options.dryRun) {
    report.reclaimed_bytes = report.removed.reduce((sum, entry) => sum + entry.bytes, 0)
    return report
  }
  await removeEntries(root, new Set(report.removed.map((entry) => entry.entry)))
  report.reclaimed_bytes = report.removed.reduce((sum, entry) => sum + entry.bytes, 0)
  await removeStagingLeftovers(root, now)
  return report
}

/** Removes entries with the index records that lead to them (the next start of their agent fetches again). */
export async function removeEntries(root: string, ids: ReadonlySet<string>): Promise<void> {
  const layout = cacheLayout(root)
  for (const name of await readdir(layout.index).catch(() => [])) {
    const record = name.endsWith('.json') ? await readIndex(layout, name.slice(0, -'.json'.length)) : undefined
    if (record && ids.has(record.entry)) await rm(join(layout.index, name), {force: true})
  }
  for (const id of ids) await removeEntry(layout, id)
}

/** Removes what fetches cut short (their daemon died) left in staging. */
export async function removeStagingLeftovers(root: string, now: number = Date.now()): Promise<void> {
  const layout = cacheLayout(root)
  for (const name of await readdir(layout.staging).catch(() => [])) {
    const stats = await lstat(join(layout.staging, name)).catch(() => undefined)
    if (stats && stats.mtimeMs < now - STAGING_LEFTOVER_MS) await removeStaging(join(layout.staging, name))
  }
}
