import {mkdir, readdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {SandboxRecord} from '../sandbox/types.js'
import {SANDBOX_ID_PATTERN} from '../sandbox/ids.js'

/** A sandbox dir as a starting daemon finds it: with its record, without one (its create was cut short), or with one it cannot read. */
export type StateEntry = {id: string; record: SandboxRecord} | {id: string; record?: undefined; problem: 'no_record' | 'unreadable'; error?: unknown}

const RECORD = 'state.json'
const TEMP_PREFIX = '.state.json.'

/**
 * Sandbox records on disk: `<root>/sandboxes/<id>/state.json`, each written
 * atomically (a temp file renamed over the old one), so a crash never leaves
 * half a record. Only `create` makes a sandbox's dir: a record saved after the
 * dir is gone fails instead of bringing the dir back.
 */
export class StateStore {
  readonly sandboxesDir: string

  constructor(readonly root: string) {
    this.sandboxesDir = join(root, 'sandboxes')
  }

  sandboxDir(id: string): string {
    return join(this.sandboxesDir, id)
  }

  async init(): Promise<void> {
    await mkdir(this.sandboxesDir, {recursive: true, mode: 0o700})
  }

  /** Makes the sandbox's dir and its first record. */
  async create(record: SandboxRecord): Promise<void> {
    await mkdir(this.sandboxDir(record.sandbox_id), {mode: 0o700})
    await this.save(record)
  }

  async save(record: SandboxRecord): Promise<void> {
    const dir = this.sandboxDir(record.sandbox_id)
    const temp = join(dir, `${TEMP_PREFIX}${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2)}`)
    try {
      await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, {mode: 0o600})
      await rename(temp, join(dir, RECORD))
    } catch (error) {
      // A full disk leaves a short temp file: it must not stay behind.
      await rm(temp, {force: true}).catch(() => undefined)
      throw error
    }
  }

  async load(id: string): Promise<SandboxRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.sandboxDir(id), RECORD), 'utf8')) as SandboxRecord
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /** Every sandbox dir, with its record when it has a readable one. */
  async scan(): Promise<StateEntry[]> {
    const ids = (await readdir(this.sandboxesDir).catch(() => [])).filter((name) => SANDBOX_ID_PATTERN.test(name)).sort()
    return Promise.all(
      ids.map(async (id): Promise<StateEntry> => {
        try {
          const record = await this.load(id)
          return record ? {id, record} : {id, problem: 'no_record'}
        } catch (error) {
          return {id, problem: 'unreadable', error}
        }
      }),
    )
  }

  /** Deletes the sandbox's dir; needs no free space, and a dir already gone is fine. */
  async remove(id: string): Promise<void> {
    await rm(this.sandboxDir(id), {recursive: true, force: true, maxRetries: 3})
  }
}
