import type {Stats} from 'node:fs'
import {lstat, readdir, readFile, readlink, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {buffer as readAll} from 'node:stream/consumers'
import {type Header, pack, type Pack} from 'tar-stream'

import {CleanroomError, messageOf} from '../errors/index.js'
import {applyCodexTrust} from './codex-trust.js'
import {normalizeCredentialTarget, SANDBOX_HOME, validateCredentialSource} from './credential-paths.js'
import type {CredentialMapping, CredentialTransform} from './spec.js'

/** A tar of credential files, with names relative to the sandbox user's home: extract it there. */
export interface CredentialArchive {
  /** Uncompressed tar; holds only the end-of-archive blocks when `files` is empty. */
  tar: Buffer
  /** Regular files packed: the host path read, the entry name, its mode and its size after any transform. */
  files: {source: string; target: string; mode: number; size: number}[]
  /** Mappings that packed nothing, with the source as the mapping declares it. */
  skipped: {source: string; reason: string}[]
  /** Things left out below a mapping (broken links, sockets, link loops) and mappings that replaced others. */
  warnings: string[]
}

export interface PackCredentialsOptions {
  /** What `~` in a source means. */
  hostHome: string
  /** Owner written into every entry: the sandbox user. */
  uid: number
  gid: number
  sandboxHome?: string
}

/** How a transform rewrites file bytes, and which file of a directory mapping it rewrites. */
const TRANSFORMS: Record<CredentialTransform, {apply: (content: Buffer) => Buffer; fileInDirectory: string}> = {
  'codex-trust': {apply: applyCodexTrust, fileInDirectory: 'config.toml'},
  none: {apply: (content) => content, fileInDirectory: ''},
}

/** One entry of the archive to be, keyed by its name. */
type PlannedEntry = {
  name: string
  /** A full `st_mode` (type bits included): tar-stream swaps a falsy mode for its 0644/0755 default, and masks the type bits off itself. */
  mode: number
  mtime: Date
} & (
  | {
      kind: 'directory'
      /** Absent for the parents made so a target's path exists. */
      hostPath?: string
    }
  | {kind: 'file'; hostPath: string; transform?: CredentialTransform; omit?: readonly string[]}
)

type EntryHeader = Partial<Header> & Pick<Header, 'name'>

const S_IFDIR = 0o040000
const PARENT_DIRECTORY_MODE = S_IFDIR | 0o700

/**
 * Packs the credential files of `mappings` into a tar for the sandbox user's home.
 * Sources are read with symlinks dereferenced (a link becomes a regular file or
 * directory under its own name); modes and mtimes are kept, owners set to `uid`/`gid`;
 * missing sources are skipped. When two mappings yield the same entry, the later one
 * wins (a list can name fallback locations of one file) and a warning says so.
 */
export async function packCredentials(mappings: readonly CredentialMapping[], options: PackCredentialsOptions): Promise<CredentialArchive> {
  const sandboxHome = options.sandboxHome ?? SANDBOX_HOME
  const sources = mappings.map((mapping) => {
    const problem = validateCredentialSource(mapping.source)
    if (problem !== undefined) throw new CleanroomError('agent_spec_invalid', `credential source ${problem}`)
    return {mapping, hostPath: expandHostPath(mapping.source.trim(), options.hostHome), target: normalizeCredentialTarget(mapping.target, sandboxHome)}
  })
  const planner = new ArchivePlanner(options.hostHome)
  for (const {mapping, hostPath, target} of sources) {
    // In order: a later mapping replaces an earlier one's entries.
    await planner.addMapping(mapping, hostPath, target)
  }

  const archive = pack()
  const tar = readAll(archive)
  const files: CredentialArchive['files'] = []
  try {
    for (const entry of planner.entries()) {
      const header: EntryHeader = {name: entry.name, mode: entry.mode, mtime: entry.mtime, uid: options.uid, gid: options.gid}
      if (entry.kind === 'directory') {
        await addEntry(archive, {...header, name: `${entry.name}/`, type: 'directory'})
        continue
      }
      const content = await planner.readContent(entry)
      if (content === undefined) continue
      await addEntry(archive, {...header, type: 'file', size: content.length}, content)
      files.push({source: entry.hostPath, target: entry.name, mode: entry.mode & 0o7777, size: content.length})
    }
    archive.finalize()
  } catch (error) {
    // The error that stopped packing is the one to report, not the stream's.
    tar.catch(() => undefined)
    archive.destroy()
    throw error
  }

  return {tar: await tar, files, skipped: planner.skipped, warnings: planner.warnings}
}

/** Walks mapping sources on the host and decides the archive's entries, in order. */
class ArchivePlanner {
  readonly skipped: CredentialArchive['skipped'] = []
  readonly warnings: string[] = []
  private readonly planned = new Map<string, PlannedEntry>()
  private readonly packedAt = new Date()

  constructor(private readonly hostHome: string) {}

  entries(): IterableIterator<PlannedEntry> {
    return this.planned.values()
  }

  async addMapping(mapping: CredentialMapping, hostPath: string, target: string): Promise<void> {
    const found = await this.resolve(hostPath)
    if (found.missing !== undefined) {
      this.skipped.push({source: mapping.source, reason: found.missing})
      if (found.missing !== 'not found') this.warnings.push(`skipped ${this.display(hostPath)}: ${found.missing}`)
      return
    }

    const segments = target.split('/')
    for (let depth = 1; depth < segments.length; depth++) {
      this.plan({name: segments.slice(0, depth).join('/'), kind: 'directory', mode: PARENT_DIRECTORY_MODE, mtime: this.packedAt})
    }

    if (found.stats.isDirectory()) {
      await this.addTree(hostPath, target, found.stats, new Set(), mapping.transform)
    } else {
      this.addNode(hostPath, target, found.stats, mapping.transform, mapping.omit)
    }
  }

  /** The entry's bytes after its transform, or undefined (with a warning) when the file vanished since planning. */
  async readContent(entry: PlannedEntry & {kind: 'file'}): Promise<Buffer | undefined> {
    const {hostPath} = entry
    let content: Buffer
    try {
      content = await readFile(hostPath)
    } catch (error) {
      if (isMissing(error)) {
        this.warnings.push(`skipped ${this.display(hostPath)}: removed while packing`)
        return undefined
      }
      throw unreadable(hostPath, error)
    }
    const transformed = entry.transform === undefined ? content : TRANSFORMS[entry.transform].apply(content)
    return entry.omit === undefined ? transformed : this.withoutKeys(entry, transformed)
  }

  /** A JSON file without the keys its mapping omits; a file that is not a JSON object is left out rather than copied whole. */
  private withoutKeys(entry: PlannedEntry & {kind: 'file'}, content: Buffer): Buffer | undefined {
    let value: unknown
    try {
      value = JSON.parse(content.toString('utf8'))
    } catch {
      value = undefined
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) {
      this.warnings.push(`skipped ${this.display(entry.hostPath)}: not a JSON object, so ${entry.omit!.join(', ')} could not be left out`)
      return undefined
    }
    const kept = Object.fromEntries(Object.entries(value).filter(([key]) => !entry.omit!.includes(key)))
    return Buffer.from(`${JSON.stringify(kept, null, 2)}\n`)
  }

  /** `lstat`, then `stat` through a link; `missing` says why there is nothing to pack. */
  private async resolve(hostPath: string): Promise<{missing: string} | {missing?: undefined; stats: Stats}> {
    let stats: Stats
    try {
      stats = await lstat(hostPath)
    } catch (error) {
      if (isMissing(error)) return {missing: 'not found'}
      throw unreadable(hostPath, error)
    }
    if (!stats.isSymbolicLink()) return {stats}

    try {
      return {stats: await stat(hostPath)}
    } catch (error) {
      if (errorCode(error) === 'ELOOP') return {missing: 'symlink loop'}
      if (isMissing(error)) return {missing: `symlink to missing ${await readlink(hostPath)}`}
      throw unreadable(hostPath, error)
    }
  }

  /** One path below a directory mapping: a file, a directory to walk, or something left out with a warning. */
  private async addChild(hostPath: string, name: string, ancestors: ReadonlySet<string>, transform?: CredentialTransform): Promise<void> {
    const found = await this.resolve(hostPath)
    if (found.missing !== undefined) {
      this.warnings.push(`skipped ${this.display(hostPath)}: ${found.missing === 'not found' ? 'removed while packing' : found.missing}`)
      return
    }
    if (found.stats.isDirectory()) await this.addTree(hostPath, name, found.stats, ancestors)
    else this.addNode(hostPath, name, found.stats, transform)
  }

  private async addTree(hostPath: string, name: string, stats: Stats, ancestors: ReadonlySet<string>, transform?: CredentialTransform): Promise<void> {
    // A directory reached again below itself can only come from a symlink: walking it would never end.
    const identity = `${stats.dev}:${stats.ino}`
    if (ancestors.has(identity)) {
      this.warnings.push(`skipped ${this.display(hostPath)}: symlink to a directory that contains it`)
      return
    }
    this.addNode(hostPath, name, stats)

    let children: string[]
    try {
      children = await readdir(hostPath)
    } catch (error) {
      throw unreadable(hostPath, error)
    }
    const below = new Set([...ancestors, identity])
    for (const child of children.sort()) {
      const childTransform = transform !== undefined && child === TRANSFORMS[transform].fileInDirectory ? transform : undefined
      await this.addChild(join(hostPath, child), `${name}/${child}`, below, childTransform)
    }
  }

  private addNode(hostPath: string, name: string, stats: Stats, transform?: CredentialTransform, omit?: readonly string[]): void {
    if (stats.isDirectory()) {
      this.plan({name, kind: 'directory', mode: stats.mode, mtime: stats.mtime, hostPath})
    } else if (stats.isFile()) {
      this.plan({name, kind: 'file', mode: stats.mode, mtime: stats.mtime, hostPath, transform, ...(omit && {omit})})
    } else {
      this.warnings.push(`skipped ${this.display(hostPath)}: a ${fileKind(stats)}, not a regular file or directory`)
    }
  }

  private plan(entry: PlannedEntry): void {
    const existing = this.planned.get(entry.name)
    if (existing !== undefined) {
      if (entry.hostPath === undefined) return
      const sameFile = existing.hostPath === entry.hostPath
      if (existing.hostPath !== undefined && !sameFile && (existing.kind === 'file' || entry.kind === 'file')) {
        this.warnings.push(`~/${entry.name}: ${this.display(entry.hostPath)} replaces ${this.display(existing.hostPath)} (the later credential mapping wins)`)
      }
    }
    // Map.set keeps a replaced key's position, so parents stay ahead of their children.
    this.planned.set(entry.name, entry)
  }

  /** A host path as the user knows it, with their home shown as `~`. */
  private display(hostPath: string): string {
    if (hostPath === this.hostHome) return '~'
    return hostPath.startsWith(`${this.hostHome}/`) ? `~${hostPath.slice(this.hostHome.length)}` : hostPath
  }
}

function expandHostPath(source: string, hostHome: string): string {
  if (source === '~') return hostHome
  if (source.startsWith('~/')) return join(hostHome, source.slice(2))
  return source
}

function addEntry(archive: Pack, header: EntryHeader, content?: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error | null) => (error ? reject(error) : resolve())
    if (content === undefined) archive.entry(header, done)
    else archive.entry(header, content, done)
  })
}

function unreadable(hostPath: string, error: unknown): CleanroomError {
  const code = errorCode(error)
  const denied = code === 'EACCES' || code === 'EPERM'
  const reason = denied ? 'permission denied' : messageOf(error)
  return new CleanroomError('credential_source_unreadable', `cannot read credential source ${hostPath}: ${reason}`, {
    cause: error,
    suggestions: [
      denied
        ? `Make ${hostPath} readable by the user running cleanroom (e.g. \`chmod u+rX ${hostPath}\` as its owner).`
        : `Check that ${hostPath} can be read.`,
      "Or drop that source from the agent's credentials (the agent's plugin or the agents: map of config.yaml).",
    ],
  })
}

function errorCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || !('code' in error)) return undefined
  return typeof error.code === 'string' ? error.code : undefined
}

function isMissing(error: unknown): boolean {
  const code = errorCode(error)
  return code === 'ENOENT' || code === 'ENOTDIR'
}

function fileKind(stats: Stats): string {
  if (stats.isSocket()) return 'socket'
  if (stats.isFIFO()) return 'FIFO'
  if (stats.isCharacterDevice()) return 'character device'
  if (stats.isBlockDevice()) return 'block device'
  return 'special file'
}
