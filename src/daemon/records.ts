import {CleanroomError, messageOf} from '../errors/index.js'
import type {SandboxRecord} from '../sandbox/types.js'
import type {Logger} from './log.js'
import type {StateStore} from './state.js'

/** Stopped sandboxes `sandbox ls --all` still shows; older ones are forgotten, so a long-lived daemon does not grow. */
export const STOPPED_KEPT = 100

/**
 * The sandboxes the daemon knows: their records in memory, and the writes of
 * those records to disk, one at a time per sandbox, in order.
 */
export class SandboxRecords {
  private readonly records = new Map<string, SandboxRecord>()
  private readonly saving = new Map<string, Promise<void>>()

  constructor(
    readonly store: StateStore,
    private readonly log: Logger,
  ) {}

  add(record: SandboxRecord): void {
    this.records.set(record.sandbox_id, record)
  }

  delete(id: string): void {
    this.records.delete(id)
  }

  /** The record of `id`, or undefined. */
  find(id: string): SandboxRecord | undefined {
    return this.records.get(id)
  }

  /** Whether `record` is still the one the daemon knows under its id (not removed and forgotten). */
  isCurrent(record: SandboxRecord): boolean {
    return this.records.get(record.sandbox_id) === record
  }

  get(id: string): SandboxRecord {
    const record = this.records.get(id)
    if (!record) {
      throw new CleanroomError('sandbox_not_found', `no sandbox ${id}`, {suggestions: ['List sandboxes with: cleanroom sandbox ls --all']})
    }
    return record
  }

  list(all: boolean): SandboxRecord[] {
    const records = [...this.records.values()].sort((a, b) => a.sandbox_id.localeCompare(b.sandbox_id))
    return all ? records : records.filter((record) => record.status !== 'stopped')
  }

  /** Writes the record as it is now, after any write of it in flight; a failure (a full disk) is logged, not thrown. */
  persist(record: SandboxRecord): Promise<void> {
    const id = record.sandbox_id
    const snapshot = structuredClone(record)
    const next = (this.saving.get(id) ?? Promise.resolve())
      .then(() => this.store.save(snapshot))
      .catch((error: unknown) => this.log(`sandbox ${id}: could not write its state (kept in memory): ${messageOf(error)}`))
    this.saving.set(id, next)
    void next.then(() => {
      if (this.saving.get(id) === next) this.saving.delete(id)
    })
    return next
  }

  /** Resolves when no write of the record of `id` is in flight (before its dir goes). */
  async written(id: string): Promise<void> {
    await this.saving.get(id)
  }

  async allWritten(): Promise<void> {
    await Promise.all(this.saving.values())
  }

  /** Forgets these stopped sandboxes (system prune); they have nothing on disk. */
  forgetStopped(ids: readonly string[]): void {
    for (const id of ids) if (this.records.get(id)?.status === 'stopped') this.records.delete(id)
  }

  /** Forgets the oldest stopped sandboxes beyond the ones kept for `sandbox ls --all`. */
  trimStopped(): void {
    const stopped = [...this.records.values()].filter((record) => record.status === 'stopped')
    stopped.sort((a, b) => a.updated_at.localeCompare(b.updated_at))
    for (const record of stopped.slice(0, Math.max(0, stopped.length - STOPPED_KEPT))) this.records.delete(record.sandbox_id)
  }
}
