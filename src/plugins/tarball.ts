import {createReadStream} from 'node:fs'
import {open} from 'node:fs/promises'
import {posix} from 'node:path'
import type {Readable} from 'node:stream'
import {createGunzip} from 'node:zlib'
import {extract} from 'tar-stream'

/** What a package tarball holds, read the way npm unpacks it. */
export interface PackageTarball {
  /** The bytes of the one `package.json`, exactly as npm will write them. */
  packageJson: Buffer
  /** Every path npm would write, relative to the package root, directories included. */
  paths: ReadonlySet<string>
}

/** Why a tarball was refused: it is not one unambiguous package. */
export class AmbiguousTarballError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AmbiguousTarballError'
  }
}

/** npm tarballs of agent plugins hold a handful of entries; far more is not one. */
const MAX_ENTRIES = 10_000
/** Bytes of entry contents read in all (uncompressed), so a gzip bomb stops early. */
const MAX_TOTAL_BYTES = 256 * 1024 * 1024
/** The most of one entry held in memory: only package.json is, and it is small. */
const MAX_BUFFERED_BYTES = 4 * 1024 * 1024

/** tar-stream's names for entries npm writes as files (node-tar's `File`, `OldFile`, `ContiguousFile`). */
const FILE_TYPES = new Set(['file', 'contiguous-file'])
/** Entries npm skips: links are dropped, so they never land, but one named package.json is still a second candidate. */
const SKIPPED_TYPES = new Set(['link', 'symlink', 'character-device', 'block-device', 'fifo'])

/**
 * Reads a package tarball as npm unpacks it: gzip or plain tar, every entry's
 * first path segment stripped (npm's `strip: 1`, whatever that segment is
 * called). Throws AmbiguousTarballError when what npm would install is not
 * one clear package: more than one top-level directory, an entry outside
 * one, a `..` or unknown entry, two entries for the same path, or anything
 * but exactly one regular `package.json`. A later duplicate would overwrite
 * the earlier on unpacking, so a reader that took the first would show one
 * package.json and install another.
 */
export async function readPackageTarball(path: string): Promise<PackageTarball> {
  const source: Readable = (await isGzip(path)) ? createReadStream(path).pipe(createGunzip()) : createReadStream(path)
  const archive = extract()
  source.on('error', (error) => archive.destroy(error))
  source.pipe(archive)

  const seen = new Map<string, 'directory' | 'other'>()
  const tops = new Set<string>()
  const packageJsons: Buffer[] = []
  let entries = 0
  let total = 0
  try {
    for await (const entry of archive) {
      const {name, size = 0} = entry.header
      // tar-stream gives null for a type flag it does not know.
      const type: string | null = entry.header.type
      if (++entries > MAX_ENTRIES) throw new AmbiguousTarballError(`it has more than ${MAX_ENTRIES} entries`)
      total += size
      if (total > MAX_TOTAL_BYTES) throw new AmbiguousTarballError(`it unpacks to more than ${MAX_TOTAL_BYTES / 1024 / 1024} MiB`)
      if (!type || (!FILE_TYPES.has(type) && !SKIPPED_TYPES.has(type) && type !== 'directory')) {
        throw new AmbiguousTarballError(`entry ${JSON.stringify(name)} is of a kind npm does not unpack`)
      }

      const segments = name.split('/')
      if (segments.includes('..')) throw new AmbiguousTarballError(`entry ${JSON.stringify(name)} has a ".." segment`)
      tops.add(segments[0] ?? '')
      if (tops.size > 1) throw new AmbiguousTarballError(`it has more than one top-level directory (${[...tops].map((top) => JSON.stringify(top)).join(', ')})`)
      const inPackage = posix.normalize(segments.slice(1).join('/')).replace(/^\/+|\/+$/g, '')
      const kind = type === 'directory' ? 'directory' : 'other'
      if (inPackage === '' || inPackage === '.') {
        if (kind === 'directory') {
          entry.resume()
          continue
        }
        throw new AmbiguousTarballError(`entry ${JSON.stringify(name)} is not inside the package directory`)
      }
      const previous = seen.get(inPackage)
      if (previous !== undefined && (previous === 'other' || kind === 'other')) {
        throw new AmbiguousTarballError(`it has two entries for ${inPackage} (the later one would replace the earlier when npm unpacks it)`)
      }
      seen.set(inPackage, kind)

      if (inPackage === 'package.json') {
        if (!FILE_TYPES.has(type)) throw new AmbiguousTarballError(`its package.json is a ${type}, not a file`)
        if (size > MAX_BUFFERED_BYTES) throw new AmbiguousTarballError(`its package.json is ${size} bytes`)
        packageJsons.push(await collect(entry))
      } else {
        entry.resume()
      }
    }
  } finally {
    source.destroy()
  }

  const [packageJson] = packageJsons
  if (packageJson === undefined) throw new AmbiguousTarballError('it has no package.json in its package directory')
  return {packageJson, paths: new Set(seen.keys())}
}

/** True when some path npm writes is `path` or lies below it. */
export function tarballHas(tarball: PackageTarball, path: string): boolean {
  if (tarball.paths.has(path)) return true
  for (const written of tarball.paths) if (written.startsWith(`${path}/`)) return true
  return false
}

/** Whether the file at `path` starts with gzip's magic bytes. */
export async function isGzip(path: string): Promise<boolean> {
  const head = Buffer.alloc(2)
  const handle = await open(path, 'r')
  try {
    await handle.read(head, 0, 2, 0)
  } finally {
    await handle.close()
  }
  return head[0] === 0x1f && head[1] === 0x8b
}

async function collect(entry: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of entry) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
