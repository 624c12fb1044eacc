import type {BackendName} from '../config/schema.js'
import {messageOf} from '../errors/index.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import type {SandboxRecord} from '../sandbox/types.js'
import type {Logger} from './log.js'
import type {StateEntry, StateStore} from './state.js'

/** What recovery needs of the manager. */
export interface RecoveryHost {
  store: StateStore
  backends: ReadonlyMap<BackendName, SandboxBackend>
  log: Logger
  /** Lists a record as it is. */
  list(record: SandboxRecord): void
  markFailed(record: SandboxRecord, why: string): Promise<void>
  /** Removes a listed sandbox. */
  remove(id: string): Promise<void>
  /** Serves a live, listed sandbox again: its egress (or its retries) and the watch on its init. */
  serve(record: SandboxRecord): Promise<void>
}

/** Sandboxes looked at side by side: each check is a few /proc reads and, for a live one, a listener helper. */
const PARALLEL = 8

/**
 * What a starting daemon (holding the state dir's lock) does with each sandbox dir.
 * It writes a status only for what it saw: a ready sandbox whose init is gone
 * becomes failed; everything else keeps its status or is removed.
 * - ready, init running: adopted (egress served again, or retried while it cannot be; init watched);
 *   an ephemeral one is removed instead, since its client left with the previous daemon;
 * - ready, init gone: failed, saying so;
 * - no record, provisioning, stopping: a create or a removal cut short, finished now:
 *   its processes are killed (by the launch record when there is no runtime yet) and its dir removed;
 * - failed: listed as it is;
 * - a record that cannot be read, or a runtime whose liveness cannot be told: left alone, logged.
 */
export async function recoverSandboxes(host: RecoveryHost): Promise<void> {
  await host.store.init()
  const entries = await host.store.scan()
  for (let start = 0; start < entries.length; start += PARALLEL) {
    await Promise.all(entries.slice(start, start + PARALLEL).map((entry) => recoverOne(host, entry)))
  }
}

async function recoverOne(host: RecoveryHost, entry: StateEntry): Promise<void> {
  const {id} = entry
  try {
    if (entry.record === undefined) {
      if (entry.problem === 'unreadable') host.log(`sandbox ${id}: its state cannot be read, left as it is: ${messageOf(entry.error)}`)
      else await reclaim(host, id, undefined, 'it has no record: its create was cut short')
      return
    }
    const {record} = entry
    if (record.status === 'failed') {
      host.list(record)
      return
    }
    if (record.status !== 'ready') {
      await reclaim(host, id, record, `it was ${record.status} when the previous daemon stopped`)
      return
    }
    await recoverReady(host, record)
  } catch (error) {
    host.log(`sandbox ${id}: recovery failed, left as it is: ${messageOf(error)}`)
  }
}

async function recoverReady(host: RecoveryHost, record: SandboxRecord): Promise<void> {
  const id = record.sandbox_id
  host.list(record)
  const backend = host.backends.get(record.backend)
  if (!backend || !record.runtime) {
    host.log(`sandbox ${id}: not checked: ${backend ? 'its record has no runtime' : `backend ${record.backend} is not available in this daemon`}`)
    return
  }
  let alive: boolean
  try {
    alive = await backend.isAlive(record.runtime)
  } catch (error) {
    host.log(`sandbox ${id}: cannot tell whether it still runs, left as it is: ${messageOf(error)}`)
    return
  }
  if (record.ephemeral) {
    await host.remove(id)
    host.log(`sandbox ${id}: removed: it was for one command, whose client left with the previous daemon`)
    return
  }
  if (!alive) {
    await host.markFailed(record, 'its init process is gone: the sandbox died while no daemon was watching it')
    return
  }
  await host.serve(record)
  host.log(`sandbox ${id}: re-adopted`)
}

async function reclaim(host: RecoveryHost, id: string, record: SandboxRecord | undefined, why: string): Promise<void> {
  const dir = host.store.sandboxDir(id)
  // Without a record the backend is unknown: each looks for what it would have left.
  const backends = record ? [host.backends.get(record.backend)] : [...host.backends.values()]
  for (const backend of backends) {
    if (!backend) throw new Error(`backend ${record?.backend} is not available in this daemon to kill what it left`)
    await backend.reclaim(dir, record?.runtime)
  }
  await host.store.remove(id)
  host.log(`sandbox ${id}: removed: ${why}`)
}
