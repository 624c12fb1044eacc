import {execa} from 'execa'
import {createReadStream} from 'node:fs'
import {stat} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {fileURLToPath} from 'node:url'
import {createGunzip} from 'node:zlib'
import {extract} from 'tar-stream'

import {isGzip} from '../plugins/tarball.js'
import {describeSize, readBoundedFile} from '../util/bounded-file.js'
import {isRecord} from '../util/yaml-file.js'

/** What `plugins install` was asked to install, as oclif's `plugins:preinstall` hook receives it. */
export type PluginInstallTarget = {type: 'npm'; name: string; tag: string} | {type: 'repo'; url: string}

/** A plugin's package.json read before installing, or why it could not be read. */
export type PluginManifestRead = {manifest: Record<string, unknown>} | {unreadable: string}

const NPM_VIEW_TIMEOUT_MS = 20_000
/** A package.json is small; anything bigger is not one worth parsing. */
const MAX_PACKAGE_JSON_BYTES = 1 << 20
/** How far into a tarball package.json is looked for: npm pack puts it first, GitHub tarballs near the start. */
const MAX_TARBALL_ENTRIES = 10_000
const MAX_TARBALL_SKIPPED_BYTES = 256 << 20

/**
 * Reads the package.json of a plugin about to be installed, without running any
 * of its code: from a `file:` tarball or directory, or `npm view` for a registry
 * name. Other sources (git, GitHub) are reported as unreadable.
 */
export async function readPluginManifest(target: PluginInstallTarget): Promise<PluginManifestRead> {
  try {
    if (target.type === 'npm') return await viewOnRegistry(`${target.name}@${target.tag}`)
    if (!target.url.startsWith('file:')) return {unreadable: 'only file: and npm sources can be read before npm fetches them'}
    const path = target.url.startsWith('file://') ? fileURLToPath(target.url) : target.url.slice('file:'.length)
    if ((await stat(path)).isDirectory()) return {manifest: parseManifest(await readPackageJson(join(path, 'package.json')))}
    return {manifest: parseManifest(await packageJsonFromTarball(path))}
  } catch (error) {
    return {unreadable: error instanceof Error ? error.message : String(error)}
  }
}

/**
 * A package.json given as bytes (of a fetched plugin tarball or a linked
 * directory), checked with the same limits as readPluginManifest.
 */
export function parsePackageJsonBytes(bytes: Buffer): Record<string, unknown> {
  if (bytes.length > MAX_PACKAGE_JSON_BYTES) throw new Error(`package.json is ${bytes.length} bytes, more than the ${MAX_PACKAGE_JSON_BYTES} a plugin's may have`)
  return parseManifest(bytes.toString('utf8'))
}

/** A directory's package.json, read only if it is a regular file of at most MAX_PACKAGE_JSON_BYTES. */
async function readPackageJson(path: string): Promise<string> {
  const read = await readBoundedFile(path, MAX_PACKAGE_JSON_BYTES)
  if (read.kind === 'missing') throw new Error(`${path} does not exist`)
  if (read.kind === 'not-a-file') throw new Error(`${path} is ${read.type}, not a file`)
  if (read.kind === 'too-large') throw new Error(`${path} is ${describeSize(read.size)}: a package.json may be at most ${describeSize(MAX_PACKAGE_JSON_BYTES)}`)
  return read.bytes.toString('utf8')
}

function parseManifest(text: string): Record<string, unknown> {
  const parsed: unknown = JSON.parse(text)
  if (!isRecord(parsed)) throw new Error('package.json is not a JSON object')
  return parsed
}

/** The shallowest `<dir>/package.json` of a (gzipped) tar: `package/` for `npm pack`, `<repo>-<ref>/` for GitHub. */
async function packageJsonFromTarball(path: string): Promise<string> {
  const gzipped = await isGzip(path)
  const source: Readable = gzipped ? createReadStream(path).pipe(createGunzip()) : createReadStream(path)
  const archive = extract()
  source.on('error', (error) => archive.destroy(error))
  source.pipe(archive)
  let entries = 0
  let skipped = 0
  for await (const entry of archive) {
    if (++entries > MAX_TARBALL_ENTRIES || skipped > MAX_TARBALL_SKIPPED_BYTES) {
      source.destroy()
      throw new Error(`${path} has no <dir>/package.json in its first ${entries - 1} entries (${describeSize(skipped)})`)
    }
    skipped += entry.header.size ?? 0
    const segments = entry.header.name.replace(/^\.\//, '').split('/')
    if (entry.header.type === 'file' && segments.length === 2 && segments[1] === 'package.json' && (entry.header.size ?? 0) <= MAX_PACKAGE_JSON_BYTES) {
      const chunks: Buffer[] = []
      for await (const chunk of entry) chunks.push(chunk as Buffer)
      source.destroy()
      return Buffer.concat(chunks).toString('utf8')
    }
    entry.resume()
  }
  throw new Error(`${path} has no <dir>/package.json`)
}

/** Only the fields the preview needs, through the host's npm (its registry and auth settings apply). */
async function viewOnRegistry(spec: string): Promise<PluginManifestRead> {
  const result = await execa('npm', ['view', spec, 'name', 'version', 'cleanroom', '--json'], {reject: false, timeout: NPM_VIEW_TIMEOUT_MS, maxBuffer: MAX_PACKAGE_JSON_BYTES})
  if (result.isMaxBuffer) return {unreadable: `npm view ${spec} printed more than ${describeSize(MAX_PACKAGE_JSON_BYTES)}`}
  if (result.exitCode !== 0) return {unreadable: `npm view ${spec} failed: ${npmErrorOf(result.stderr) ?? (result.timedOut ? 'timed out' : `exit ${result.exitCode}`)}`}
  // One field prints its value, several an object; the spec may also match several versions (an array).
  const parsed: unknown = result.stdout.trim() === '' ? {} : JSON.parse(result.stdout)
  const manifest = Array.isArray(parsed) ? parsed.at(-1) : parsed
  if (!isRecord(manifest)) return {unreadable: `npm view ${spec} printed no package.json fields`}
  return {manifest}
}

/** npm's explanation (e.g. "404 Not Found - GET …"), without its error code and log file lines. */
function npmErrorOf(stderr: string): string | undefined {
  return stderr
    .split('\n')
    .filter((line) => line.startsWith('npm error ') && !/^npm error (code |A complete log)/.test(line))
    .map((line) => line.slice('npm error '.length))
    .at(0)
}
