import {lstat, mkdir, readdir, readFile, rename, rm, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isRecord} from '../../util/record.js'
import {type CacheLayout, ENTRY_ID_PATTERN} from './layout.js'
import {unsealTree} from './tree.js'

/** `index/<key>.json`: what a package@wanted resolves to. */
export interface IndexRecord {
  package: string
  wanted: string
  version: string
  entry: string
  /** When the registry was last asked what `wanted` is (an exact version: when it was fetched). */
  checked_at: string
}

/** `entries/<id>.json`: what an entry holds. */
export interface EntryRecord {
  package: string
  version: string
  fetched_at: string
  bytes: number
}

export async function readIndex(layout: CacheLayout, key: string): Promise<IndexRecord | undefined> {
  const value = await readJson(join(layout.index, `${key}.json`))
  if (!isRecord(value)) return undefined
  const {package: name, wanted, version, entry, checked_at: checkedAt} = value
  if (typeof name !== 'string' || typeof wanted !== 'string' || typeof version !== 'string' || typeof checkedAt !== 'string') return undefined
  if (typeof entry !== 'string' || !ENTRY_ID_PATTERN.test(entry)) return undefined
  return {package: name, wanted, version, entry, checked_at: checkedAt}
}

export async function writeIndex(layout: CacheLayout, key: string, record: IndexRecord): Promise<void> {
  await writeJsonAtomically(layout.index, `${key}.json`, record)
}

/** Marks an index record as used now: `system prune` keeps what was used recently. */
export async function touchIndex(layout: CacheLayout, key: string): Promise<void> {
  const now = new Date()
  await utimes(join(layout.index, `${key}.json`), now, now).catch(() => undefined)
}

/** An entry's record, when the entry is a directory (never a symlink) with a readable record. */
export async function readEntry(layout: CacheLayout, id: string): Promise<EntryRecord | undefined> {
  if (!ENTRY_ID_PATTERN.test(id)) return undefined
  const stats = await lstat(join(layout.entries, id)).catch(() => undefined)
  if (!stats?.isDirectory()) return undefined
  const value = await readJson(join(layout.entries, `${id}.json`))
  if (!isRecord(value)) return undefined
  const {package: name, version, fetched_at: fetchedAt, bytes} = value
  if (typeof name !== 'string' || typeof version !== 'string' || typeof fetchedAt !== 'string' || typeof bytes !== 'number') return undefined
  return {package: name, version, fetched_at: fetchedAt, bytes}
}

/** Moves a sealed tree into place as entry `id`; an entry of that id is already the same content, and is kept. */
export async function addEntry(layout: CacheLayout, tree: string, id: string, record: EntryRecord): Promise<void> {
  await mkdir(layout.entries, {recursive: true, mode: 0o755})
  try {
    await rename(tree, join(layout.entries, id))
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw error
  }
  await writeJsonAtomically(layout.entries, `${id}.json`, record)
}

export async function removeEntry(layout: CacheLayout, id: string): Promise<void> {
  const dir = join(layout.entries, id)
  await unsealTree(dir)
  await rm(dir, {recursive: true, force: true})
  await rm(join(layout.entries, `${id}.json`), {force: true})
}

/** Removes what a fetch left in staging (a daemon killed mid-fetch), or one fetch's own directory. */
export async function removeStaging(path: string): Promise<void> {
  await unsealTree(path)
  await rm(path, {recursive: true, force: true})
}

/** One entry as `system df` lists it. */
export interface EntryUsage {
  entry: string
  package: string
  version: string
  bytes: number
  /** The latest use of an index record that resolves to it (its fetch, when none does). */
  last_used_at: string
  /** The package@wanted names that resolve to it now. */
  wanted: string[]
}

/** Every entry with its size and last use, and the bytes of everything else in the cache (records, staging). */
export async function listEntries(layout: CacheLayout): Promise<{entries: EntryUsage[]; bytes: number}> {
  const users = new Map<string, {wanted: string[]; lastUsed: number}>()
  for (const name of await readdir(layout.index).catch(() => [])) {
    if (!name.endsWith('.json')) continue
    const key = name.slice(0, -'.json'.length)
    const record = await readIndex(layout, key)
    const stats = await lstat(join(layout.index, name)).catch(() => undefined)
    if (!record || !stats) continue
    const user = users.get(record.entry) ?? {wanted: [], lastUsed: 0}
    user.wanted.push(`${record.package}@${record.wanted}`)
    user.lastUsed = Math.max(user.lastUsed, stats.mtimeMs)
    users.set(record.entry, user)
  }
  const entries: EntryUsage[] = []
  for (const name of (await readdir(layout.entries).catch(() => [])).sort()) {
    if (!ENTRY_ID_PATTERN.test(name)) continue
    const record = await readEntry(layout, name)
    const user = users.get(name)
    const fetched = record ? Date.parse(record.fetched_at) : 0
    entries.push({
      entry: name,
      package: record?.package ?? '(unknown)',
      version: record?.version ?? '(unknown)',
      bytes: await bytesOnDisk(join(layout.entries, name)),
      last_used_at: new Date(Math.max(user?.lastUsed ?? 0, fetched)).toISOString(),
      wanted: user?.wanted.sort() ?? [],
    })
  }
  return {entries, bytes: await bytesOnDisk(layout.root)}
}

/** Blocks allocated below `path`, as du counts them: symlinks not followed, a hard-linked file once. */
async function bytesOnDisk(path: string, seen = new Set<string>()): Promise<number> {
  const stats = await lstat(path).catch(() => undefined)
  if (!stats || seen.has(`${stats.dev}:${stats.ino}`)) return 0
  seen.add(`${stats.dev}:${stats.ino}`)
  let bytes = stats.blocks * 512
  if (stats.isDirectory()) for (const name of await readdir(path).catch(() => [])) bytes += await bytesOnDisk(join(path, name), seen)
  return bytes
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown
  } catch {
    return undefined
  }
}

async function writeJsonAtomically(dir: string, name: string, value: unknown): Promise<void> {
  await mkdir(dir, {recursive: true, mode: 0o755})
  const temp = join(dir, `.${name}.${process.pid}.${Date.now()}`)
  await writeFile(temp, `${JSON.stringify(value, null, 2)}\n`, {mode: 0o644})
  await rename(temp, join(dir, name))
}
