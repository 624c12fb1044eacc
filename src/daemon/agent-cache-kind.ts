import {basename, join} from 'node:path'

import {cacheLayout, ENTRY_ID_PATTERN} from '../agents/cache/layout.js'
import {listEntries} from '../agents/cache/store.js'
import {entriesInUse, removeEntries, removeStagingLeftovers} from '../agents/cache/usage.js'
import type {SandboxManager} from './manager.js'
import type {CacheKind} from './system/caches.js'

/**
 * The shared agent cache as one more kind of `system df`/`system prune` cache:
 * each entry listed with the package it holds; one a live sandbox has mounted is
 * never removed (a running agent reads its files).
 */
export function agentCacheKind(root: string, manager: SandboxManager): CacheKind {
  const layout = cacheLayout(root)
  return {
    kind: 'agents',
    description: 'agent packages new agent sandboxes mount read-only (docs/agents.md)',
    location: {
      scope: 'entries',
      store: {
        async list() {
          const inUse = entriesInUse(manager.list(true))
          const {entries} = await listEntries(layout)
          return entries.map((entry) => ({
            path: join(layout.entries, entry.entry),
            bytes: entry.bytes,
            last_used_at: entry.last_used_at,
            holds: `${entry.package} ${entry.version}`,
            in_use: inUse.has(entry.entry),
          }))
        },
        async remove(path) {
          const id = basename(path)
          if (!ENTRY_ID_PATTERN.test(id) || path !== join(layout.entries, id)) return 'it is not an entry of the agent cache'
          if (entriesInUse(manager.list(true)).has(id)) return 'a sandbox has it mounted now'
          await removeEntries(root, new Set([id]))
          await removeStagingLeftovers(root)
          return undefined
        },
      },
    },
  }
}
