import {formatDuration} from '../../util/duration.js'
import type {CacheUsage, Inventory, LogUsage, SandboxUsage} from './inventory.js'

export interface PruneOptions {
  /** Also remove ready sandboxes unused for longer than `olderThanMs` (without: only their caches are emptied). */
  all: boolean
  /** Only what was last used longer ago than this. */
  olderThanMs: number
  dryRun: boolean
}

export const DEFAULT_PRUNE_AGE_MS = 7 * 86_400_000

/** One thing prune removes (or would), or keeps and why. */
export type PruneItem =
  | {type: 'sandbox'; sandbox_id: string; status: string; bytes: number}
  | {type: 'cache'; kind: string; sandbox_id: string | null; path: string; bytes: number}
  | {type: 'log'; path: string; bytes: number}

export interface PrunePlan {
  remove: PruneItem[]
  keep: (PruneItem & {reason: string})[]
}

/**
 * What `system prune` removes, decided from an inventory alone (docs/operations.md):
 * - failed sandboxes, and stopped ones (nothing on disk; forgotten), last used before the cut-off;
 * - ready sandboxes last used before the cut-off: with `all`, removed; without, their caches emptied;
 * - caches on the host not touched since the cut-off (an entry no sandbox has mounted); the rotated
 *   daemon log not written since.
 * Never: a sandbox in use (an execution, or a process one left), one being created or
 * removed, one used since the cut-off, the live daemon log, a kept sandbox's audit log.
 */
export function planPrune(inventory: Inventory, options: Omit<PruneOptions, 'dryRun'>, now: number): PrunePlan {
  const plan: PrunePlan = {remove: [], keep: []}
  const cutOff = now - options.olderThanMs
  const recent = `used within the last ${formatDuration(options.olderThanMs)}`
  const removed = new Map<string, PruneItem>()
  for (const sandbox of inventory.sandboxes) {
    const item = sandboxItem(sandbox)
    const reason = keepSandbox(sandbox, options.all, Date.parse(sandbox.last_used_at) > cutOff, recent)
    if (reason === undefined) {
      plan.remove.push(item)
      removed.set(sandbox.sandbox_id, item)
    } else {
      plan.keep.push({...item, reason})
    }
  }
  const sandboxes = new Map(inventory.sandboxes.map((sandbox) => [sandbox.sandbox_id, sandbox]))
  for (const cache of inventory.caches) {
    const goesWith = cache.sandbox_id === null ? undefined : removed.get(cache.sandbox_id)
    if (goesWith) {
      goesWith.bytes += cache.bytes
      continue
    }
    const item = cacheItem(cache)
    const owner = cache.sandbox_id === null ? undefined : sandboxes.get(cache.sandbox_id)
    const reason = owner?.in_use ? 'its sandbox is in use' : cache.in_use ? 'a sandbox has it mounted' : Date.parse(cache.last_used_at) > cutOff ? recent : undefined
    if (reason === undefined) plan.remove.push(item)
    else plan.keep.push({...item, reason})
  }
  for (const log of inventory.logs) {
    const item = logItem(log)
    const reason = log.live ? 'the daemon writes it' : Date.parse(log.modified_at) > cutOff ? `written within the last ${formatDuration(options.olderThanMs)}` : undefined
    if (reason === undefined) plan.remove.push(item)
    else plan.keep.push({...item, reason})
  }
  return plan
}

function keepSandbox(sandbox: SandboxUsage, all: boolean, usedSince: boolean, recent: string): string | undefined {
  switch (sandbox.status) {
    case 'provisioning':
    case 'stopping': {
      return `it is ${sandbox.status}`
    }
    case 'ready': {
      if (sandbox.in_use) return 'it is in use'
      if (usedSince) return recent
      return all ? undefined : 'it is ready (removed only with --all; its caches are emptied)'
    }
    case 'failed':
    case 'stopped': {
      return usedSince ? recent : undefined
    }
  }
}

function sandboxItem(sandbox: SandboxUsage): PruneItem {
  return {type: 'sandbox', sandbox_id: sandbox.sandbox_id, status: sandbox.status, bytes: sandbox.bytes}
}

function cacheItem(cache: CacheUsage): PruneItem {
  return {type: 'cache', kind: cache.kind, sandbox_id: cache.sandbox_id, path: cache.path, bytes: cache.bytes}
}

function logItem(log: LogUsage): PruneItem {
  return {type: 'log', path: log.path, bytes: log.bytes}
}
