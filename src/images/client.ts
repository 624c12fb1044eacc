import {createReadStream} from 'node:fs'
import {lstat, readdir, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pack} from 'tar-stream'

import {check, collect, type DaemonClient} from '../client/client.js'
import {CleanroomError, type ErrorCode} from '../errors/index.js'
import type {RegistryAccess} from './auth.js'
import type {ImageEvent} from './build.js'
import type {PullResult} from './pull.js'
import type {PruneResult} from './service.js'
import type {CachedImage} from './store.js'

/** The CLI's side of the image routes (docs/api.md#images). */

/** POST /v1/images/pull: the progress lines go to `onEvent`; resolves to the result line, rejects with the error line. */
export async function pullThroughDaemon(client: DaemonClient, ref: string, access: RegistryAccess, onEvent: (event: ImageEvent) => void, platform?: string): Promise<PullResult> {
  const body = {ref, ...(access.insecure !== undefined && {insecure: access.insecure}), ...(platform && {platform}), ...authOf(access)}
  const response = await client.send('POST', '/v1/images/pull', Readable.from([Buffer.from(JSON.stringify(body))]))
  if (response.statusCode !== 200) check({status: response.statusCode ?? 0, body: await collect(response)})
  let partial = ''
  for await (const chunk of response) {
    const lines = (partial + (chunk as Buffer).toString('utf8')).split('\n')
    partial = lines.pop() ?? ''
    for (const line of lines) {
      if (line.trim() === '') continue
      const message = JSON.parse(line) as (ImageEvent | ({type: 'result'} & PullResult) | {type: 'error'; error: {code: string; message: string; suggestions?: string[]; details?: unknown}})
      if (message.type === 'result') {
        const {type: _type, ...result} = message
        return result
      }
      if (message.type === 'error') {
        throw new CleanroomError(message.error.code as ErrorCode, message.error.message, {suggestions: message.error.suggestions, details: message.error.details})
      }
      onEvent(message)
    }
  }
  throw new CleanroomError('daemon_unavailable', 'the daemon closed the pull before saying how it ended', {suggestions: ['Check its log: $XDG_STATE_HOME/cleanroom/daemon.log']})
}

export function listImages(client: DaemonClient): Promise<CachedImage[]> {
  return client.json('GET', '/v1/images')
}

export function removeImage(client: DaemonClient, selector: string): Promise<CachedImage> {
  return client.json('DELETE', `/v1/images/${encodeURIComponent(selector)}`)
}

export function pruneImages(client: DaemonClient, keep: readonly string[], dryRun: boolean): Promise<PruneResult> {
  return client.json('POST', '/v1/images/prune', {keep, dry_run: dryRun})
}

/** POST /v1/images/import with the tarball (or the packed OCI layout) as the body. */
export async function importThroughDaemon(client: DaemonClient, ref: string, format: 'rootfs' | 'oci-layout', body: Readable): Promise<CachedImage> {
  const response = await client.send('POST', `/v1/images/import?ref=${encodeURIComponent(ref)}&format=${format}`, body)
  const raw = {status: response.statusCode ?? 0, body: await collect(response)}
  check(raw)
  return JSON.parse(raw.body.toString('utf8')) as CachedImage
}

function authOf(access: RegistryAccess): {auth?: Record<string, string>} {
  const auth: Record<string, string> = {}
  if (access.username !== undefined && access.password !== undefined) Object.assign(auth, {username: access.username, password: access.password})
  if (access.token !== undefined) auth.token = access.token
  return Object.keys(auth).length === 0 ? {} : {auth}
}

/**
 * What `image import` sends: a directory is an OCI layout, packed as a tar of
 * its oci-layout, index.json and blobs/sha256/* (nothing else); a file or `-`
 * (stdin) is a root filesystem tarball, sent as it is.
 */
export async function openImportSource(source: string, stdin: Readable): Promise<{format: 'rootfs' | 'oci-layout'; body: Readable}> {
  if (source === '-') return {format: 'rootfs', body: stdin}
  const stats = await stat(source).catch(() => undefined)
  if (stats === undefined) throw new CleanroomError('usage', `cannot import ${source}: no such file or directory`)
  if (stats.isDirectory()) return {format: 'oci-layout', body: packOciLayout(source)}
  return {format: 'rootfs', body: createReadStream(source)}
}

function packOciLayout(dir: string): Readable {
  const archive = pack()
  void (async () => {
    try {
      const blobs = join('blobs', 'sha256')
      const names = ['oci-layout', 'index.json', ...(await readdir(join(dir, blobs)).catch(() => [])).sort().map((name) => join(blobs, name))]
      for (const name of names) {
        const path = join(dir, name)
        const stats = await lstat(path).catch(() => undefined)
        if (!stats?.isFile()) continue
        await new Promise<void>((resolve, reject) => {
          const entry = archive.entry({name, size: stats.size, mode: 0o644}, (error) => (error ? reject(error) : resolve()))
          createReadStream(path).on('error', reject).pipe(entry)
        })
      }
      archive.finalize()
    } catch (error) {
      archive.destroy(error as Error)
    }
  })()
  return Readable.from(archive)
}
