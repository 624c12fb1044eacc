import {mkdir, readdir, readFile, rename, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {SandboxRecord} from '../sandbox/types.js'
import {SANDBOX_ID_PATTERN} from '../sandbox/ids.js'

/**
 * Sandbox records on disk: `<root>/sandboxes/<id>/state.json`, each written
 * atomically (a temp file renamed over the old one), so a crash never leaves
 * half a record.
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

  async save(record: SandboxRecord): Promise<void> {
    const dir = this.sandboxDir(record.sandbox_id)
    await mkdir(dir, {recursive: true, mode: 0o700})
    const temp = join(dir, `.state.json.${process.pid}.${Date.now()}`)
    await writeFile(temp, `${JSON.stringify(record, null, 2)}\n`, {mode: 0o600})
    await rename(temp, join(dir, 'state.json'))
  }

  async load(id: string): Promise<SandboxRecord | undefined> {
    try {
      return JSON.parse(await readFile(join(this.sandboxDir(id), 'state.json'), 'utf8')) as SandboxRecord
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
  }

  /** Every record on disk; unreadable ones are reported through `onBroken` and skipped. */
  async loadAll(onBroken: (id: string, error: unknown) => void): Promise<SandboxRecord[]> {
    const ids = (await readdir(this.sandboxesDir).catch(() => [])).filter((name) => SANDBOX_ID_PATTERN.test(name))
    const records: SandboxRecord[] = []
    for (const id of ids.sort()) {
      try {
        const record = await this.load(id)
        if (record) records.push(record)
      } catch (error) {
        onBroken(id, error)
      }
    }
    return records
  }

  async remove(id: string): Promise<void> {
    await rm(this.sandboxDir(id), {recursive: true, force: true})
  }
}
