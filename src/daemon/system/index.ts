import {rm} from 'node:fs/promises'

import {messageOf} from '../../errors/index.js'
import {badRequest} from '../http.js'
import type {Logger} from '../log.js'
import type {SandboxManager} from '../manager.js'
import {CACHE_KINDS, type CacheKind, emptyInside} from './caches.js'
import {type Inventory, takeInventory} from './inventory.js'
import {DEFAULT_PRUNE_AGE_MS, type PruneItem, type PruneOptions, planPrune} from './plan.js'

export interface SystemContext {
  manager: SandboxManager
  stateDir: string
  log: Logger
  /** The caches to look at; CACHE_KINDS unless a test brings its own. */
  kinds?: readonly CacheKind[]
}

export interface UsageTotal {
  type: 'sandboxes' | 'caches' | 'logs'
  count: number
  bytes: number
  /** What `cleanroom system prune` with its defaults would free. */
  reclaimable_bytes: number
}

/** GET /v1/system/df. */
export type DiskUsageReport = Inventory & {totals: UsageTotal[]}

/** POST /v1/system/prune. */
export interface PruneReport {
  dry_run: boolean
  all: boolean
  older_than_seconds: number
  /** What was removed, or with `dry_run` what would be. */
  removed: PruneItem[]
  kept: (PruneItem & {reason: string})[]
  failed: (PruneItem & {error: string})[]
  reclaimed_bytes: number
}

/** What cleanroom keeps on disk, by sandbox, cache and log, with what a default prune would free. */
export async function diskUsage(context: SystemContext): Promise<DiskUsageReport> {
  const inventory = await takeInventory(context, context.kinds ?? CACHE_KINDS)
  const plan = planPrune(inventory, {all: false, olderThanMs: DEFAULT_PRUNE_AGE_MS}, Date.now())
  const total = (type: UsageTotal['type'], items: {bytes: number}[], itemType: PruneItem['type']): UsageTotal => ({
    type,
    count: items.length,
    bytes: sum(items),
    reclaimable_bytes: sum(plan.remove.filter((item) => item.type === itemType)),
  })
  return {
    ...inventory,
    totals: [total('sandboxes', inventory.sandboxes, 'sandbox'), total('caches', inventory.caches, 'cache'), total('logs', inventory.logs, 'log')],
  }
}

/** Removes what the plan says (docs/operations.md#system-prune), each item checked again just before. */
export async function prune(context: SystemContext, options: PruneOptions): Promise<PruneReport> {
  const inventory = await takeInventory(context, context.kinds ?? CACHE_KINDS)
  const plan = planPrune(inventory, options, Date.now())
  const report: PruneReport = {
    dry_run: options.dryRun,
    all: options.all,
    older_than_seconds: options.olderThanMs / 1000,
    removed: [],
    kept: plan.keep,
    failed: [],
    reclaimed_bytes: 0,
  }
  for (const item of plan.remove) {
    try {
      const skipped = options.dryRun ? undefined : await removeItem(context, item)
      if (skipped === undefined) {
        report.removed.push(item)
        report.reclaimed_bytes += item.bytes
      } else {
        report.kept.push({...item, reason: skipped})
      }
    } catch (error) {
      report.failed.push({...item, error: messageOf(error)})
    }
  }
  if (!options.dryRun) context.log(`system prune: ${report.removed.length} removed, ${report.reclaimed_bytes} bytes freed${report.failed.length > 0 ? `, ${report.failed.length} failed` : ''}`)
  return report
}

/** Removes one item; answers why not when it came into use since the inventory. */
async function removeItem(context: SystemContext, item: PruneItem): Promise<string | undefined> {
  const {manager} = context
  switch (item.type) {
    case 'sandbox': {
      if (item.status === 'stopped') {
        manager.forgetStopped([item.sandbox_id])
        return undefined
      }
      if (busy(manager, item.sandbox_id)) return 'it came into use'
      await manager.remove(item.sandbox_id)
      return undefined
    }
    case 'cache': {
      if (item.sandbox_id === null) {
        const kind = (context.kinds ?? CACHE_KINDS).find((candidate) => candidate.kind === item.kind)
        if (kind?.location.scope === 'entries') return kind.location.store.remove(item.path)
        await rm(item.path, {recursive: true, force: true})
        return undefined
      }
      const record = manager.get(item.sandbox_id)
      if (record.status !== 'ready' || !record.runtime) return `its sandbox is ${record.status}`
      if (busy(manager, item.sandbox_id)) return 'its sandbox came into use'
      await emptyInside(manager.backendOf(record), record.runtime, item.path.replace(/^~\//, ''))
      return undefined
    }
    case 'log': {
      await rm(item.path, {force: true})
      return undefined
    }
  }
}

function busy(manager: SandboxManager, id: string): boolean {
  const executions = manager.executions(id)
  return executions.running + executions.pending > 0
}

/** The body of POST /v1/system/prune: `{"all"?, "dry_run"?, "older_than_seconds"?}` (default 7 days). */
export function parsePruneRequest(body: Record<string, unknown>): PruneOptions {
  const {all = false, dry_run: dryRun = false, older_than_seconds: seconds = DEFAULT_PRUNE_AGE_MS / 1000} = body
  if (typeof all !== 'boolean') throw badRequest('all must be true or false')
  if (typeof dryRun !== 'boolean') throw badRequest('dry_run must be true or false')
  if (typeof seconds !== 'number' || !Number.isSafeInteger(seconds) || seconds < 0) throw badRequest('older_than_seconds must be a whole number of seconds, 0 or more')
  return {all, dryRun, olderThanMs: seconds * 1000}
}

function sum(items: {bytes: number}[]): number {
  return items.reduce((total, item) => total + item.bytes, 0)
}
