import {stat} from 'node:fs/promises'
import {join} from 'node:path'

import {messageOf} from '../../errors/index.js'
import type {SandboxRecord, SandboxStatus} from '../../sandbox/types.js'
import {diskUsage} from '../../util/disk-usage.js'
import type {Logger} from '../log.js'
import type {SandboxManager} from '../manager.js'
import {type CacheKind, measureInside} from './caches.js'

export interface SandboxUsage {
  sandbox_id: string
  status: SandboxStatus
  /** Its files on disk, its caches (listed apart) left out. */
  bytes: number
  /** When it was last used: an execution's start or end, else its creation; a failed one's failure. */
  last_used_at: string
  /** An execution runs in it (or waits to be attached), or a process one left behind does. */
  in_use: boolean
}

export interface CacheUsage {
  kind: string
  /** The sandbox whose home holds it; null for a cache on the host. */
  sandbox_id: string | null
  /** `~/.npm` inside a sandbox, or a host path. */
  path: string
  bytes: number
  last_used_at: string
  /** What an entry of a host cache holds (a package and its version). */
  holds?: string
  /** An entry of a host cache that a live sandbox has mounted. */
  in_use?: boolean
}

export interface LogUsage {
  path: string
  bytes: number
  modified_at: string
  /** The log the daemon writes now: never pruned. */
  live: boolean
}

export interface Inventory {
  sandboxes: SandboxUsage[]
  caches: CacheUsage[]
  logs: LogUsage[]
}

export interface InventoryContext {
  manager: SandboxManager
  stateDir: string
  log: Logger
}

const DAEMON_LOGS = ['daemon.log', 'daemon.log.1']
const PARALLEL = 4

/** Everything cleanroom keeps on disk that `system df` reports and `system prune` may remove. */
export async function takeInventory(context: InventoryContext, kinds: readonly CacheKind[]): Promise<Inventory> {
  const inventory: Inventory = {sandboxes: [], caches: [], logs: []}
  const records = context.manager.list(true)
  for (let start = 0; start < records.length; start += PARALLEL) {
    await Promise.all(records.slice(start, start + PARALLEL).map((record) => measureSandbox(context, record, kinds, inventory)))
  }
  for (const kind of kinds) {
    if (kind.location.scope === 'entries') {
      for (const entry of await kind.location.store.list()) inventory.caches.push({kind: kind.kind, sandbox_id: null, ...entry})
      continue
    }
    if (kind.location.scope !== 'host') continue
    const stats = await stat(kind.location.dir).catch(() => undefined)
    if (stats) inventory.caches.push({kind: kind.kind, sandbox_id: null, path: kind.location.dir, bytes: await diskUsage(kind.location.dir), last_used_at: stats.mtime.toISOString()})
  }
  for (const name of DAEMON_LOGS) {
    const path = join(context.stateDir, name)
    const stats = await stat(path).catch(() => undefined)
    if (stats?.isFile()) inventory.logs.push({path, bytes: stats.blocks * 512, modified_at: stats.mtime.toISOString(), live: name === DAEMON_LOGS[0]})
  }
  inventory.sandboxes.sort((a, b) => a.sandbox_id.localeCompare(b.sandbox_id))
  return inventory
}

async function measureSandbox(context: InventoryContext, record: SandboxRecord, kinds: readonly CacheKind[], inventory: Inventory): Promise<void> {
  const id = record.sandbox_id
  const lastUsed = record.status === 'ready' ? (record.last_used_at ?? record.created_at) : record.updated_at
  if (record.status === 'stopped') {
    inventory.sandboxes.push({sandbox_id: id, status: record.status, bytes: 0, last_used_at: lastUsed, in_use: false})
    return
  }
  const dirBytes = await diskUsage(context.manager.store.sandboxDir(id))
  let cacheBytes = 0
  let inUse = false
  const executions = context.manager.executions(id)
  if (record.status === 'ready' && record.runtime) {
    const backend = context.manager.backendOf(record)
    try {
      inUse = executions.running + executions.pending > 0 || (await backend.hasWorkload(record.runtime))
      const homes = kinds.flatMap((kind) => (kind.location.scope === 'sandbox' ? [kind.location.home] : []))
      const sizes = await measureInside(backend, record.runtime, homes)
      for (const kind of kinds) {
        if (kind.location.scope !== 'sandbox') continue
        const bytes = sizes.get(kind.location.home)
        if (bytes === undefined) continue
        cacheBytes += bytes
        inventory.caches.push({kind: kind.kind, sandbox_id: id, path: `~/${kind.location.home}`, bytes, last_used_at: lastUsed})
      }
    } catch (error) {
      context.log(`sandbox ${id}: could not measure its caches: ${messageOf(error)}`)
    }
  }
  inventory.sandboxes.push({sandbox_id: id, status: record.status, bytes: Math.max(0, dirBytes - cacheBytes), last_used_at: lastUsed, in_use: inUse || record.status === 'provisioning' || record.status === 'stopping'})
}
