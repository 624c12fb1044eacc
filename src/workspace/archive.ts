import {once} from 'node:events'
import {Readable, type Writable} from 'node:stream'
import {extract, type Header, pack} from 'tar-stream'

import {CleanroomError} from '../errors/index.js'
import type {ChangeRecord, WorkspaceSummary} from './changes.js'
import type {EntryState, ObjectFormat} from './entry.js'

type Source = ReturnType<typeof extract> extends AsyncIterable<infer Entry> ? Entry : never

/** The first entry of a changes archive: the list of changes with their three versions. */
export const MANIFEST_NAME = 'changes.json'
/** Where the sandbox's version of each path is in the archive. */
export const CONTENT_PREFIX = 'files/'
/** A manifest larger than this is not read (a change list of this size is not a real one). */
const MANIFEST_LIMIT = 256 << 20

export interface ChangesManifest extends Omit<WorkspaceSummary, 'changes'> {
  /** The host directory the sandbox's workspace was made from. */
  workspace_source: string
  object_format: ObjectFormat
  changes: ChangeRecord[]
}

/**
 * The archive `workspace apply` reads (GET …/workspace/archive): the manifest,
 * then, in its order, the sandbox's version of every path it did not delete
 * (files with mode 644 or 755, symlinks). Produced as it is sent.
 */
export function changesArchive(
  records: readonly ChangeRecord[],
  about: Omit<ChangesManifest, 'changes'>,
  read: (path: string, state: EntryState) => AsyncIterable<Buffer>,
): Readable {
  const archive = pack()
  void (async () => {
    const manifest: ChangesManifest = {...about, changes: [...records]}
    const body = Buffer.from(JSON.stringify(manifest))
    await addEntry(archive, {name: MANIFEST_NAME, size: body.length, mode: 0o644}, [body])
    for (const record of records) {
      if (!record.sandbox) continue
      const name = CONTENT_PREFIX + record.path
      if (record.sandbox.mode === '120000') await addEntry(archive, {name, type: 'symlink', linkname: record.link ?? ''}, [])
      else await addEntry(archive, {name, size: record.sandbox.size, mode: record.sandbox.mode === '100755' ? 0o755 : 0o644}, read(record.path, record.sandbox))
    }
    archive.finalize()
  })().catch((error: unknown) => archive.destroy(error as Error))
  return Readable.from(archive)
}

async function addEntry(archive: ReturnType<typeof pack>, header: Partial<Header> & Pick<Header, 'name'>, content: AsyncIterable<Buffer> | Buffer[]): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    // A streamx writable: write, end, destroy and 'drain' as in Node's streams.
    const sink = archive.entry(header, (error) => (error ? reject(error) : resolve())) as unknown as Writable
    void (async () => {
      for await (const chunk of content) if (!sink.write(chunk)) await once(sink, 'drain')
      sink.end()
    })().catch((error: unknown) => {
      sink.destroy(error as Error)
      reject(error as Error)
    })
  })
}

/** An entry of a changes archive as `workspace apply` reads it. */
export interface ArchivedContent {
  path: string
  type: 'file' | 'symlink'
  linkname?: string
  content: AsyncIterable<Buffer>
}

/**
 * Reads a changes archive: the manifest first, then `contents()` yields each
 * entry as it arrives (the caller consumes each one's content before the next).
 */
export async function openChangesArchive(stream: Readable): Promise<{manifest: ChangesManifest; contents: () => AsyncGenerator<ArchivedContent>}> {
  const unpack = extract()
  stream.on('error', (error: Error) => unpack.destroy(error))
  stream.pipe(unpack as unknown as NodeJS.WritableStream)
  const entries = (unpack as AsyncIterable<Source>)[Symbol.asyncIterator]()
  const first = await entries.next()
  if (first.done || first.value.header.name !== MANIFEST_NAME || (first.value.header.size ?? 0) > MANIFEST_LIMIT) {
    throw new CleanroomError('backend_failed', `the daemon's changes archive does not start with ${MANIFEST_NAME}`)
  }
  const parts: Buffer[] = []
  for await (const chunk of first.value as unknown as AsyncIterable<Buffer>) parts.push(chunk)
  const manifest = JSON.parse(Buffer.concat(parts).toString('utf8')) as ChangesManifest
  async function* contents(): AsyncGenerator<ArchivedContent> {
    for (;;) {
      const next = await entries.next()
      if (next.done) return
      const {header} = next.value
      if (!header.name.startsWith(CONTENT_PREFIX) || (header.type !== 'file' && header.type !== 'symlink')) {
        throw new CleanroomError('backend_failed', `unexpected entry in the daemon's changes archive: ${JSON.stringify(header.name)}`)
      }
      yield {
        path: header.name.slice(CONTENT_PREFIX.length),
        type: header.type,
        ...(header.type === 'symlink' ? {linkname: header.linkname ?? ''} : {}),
        content: next.value as unknown as AsyncIterable<Buffer>,
      }
      // Whatever the caller left unread is skipped.
      next.value.resume()
    }
  }
  return {manifest, contents}
}
