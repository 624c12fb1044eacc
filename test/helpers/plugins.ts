import {execa} from 'execa'
import {cp, mkdir, readdir, rename, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pack} from 'tar-stream'

import {isolatedEnv, PROJECT_ROOT} from './cli.js'

export const PLUGIN_FIXTURES = join(PROJECT_ROOT, 'test/fixtures/plugins')

/**
 * `npm pack` of a plugin directory into `dest`, scripts off (a fixture's
 * `prepare` must not run here, in the developer's home), returning the
 * tarball's path.
 */
export async function packDirectory(dir: string, dest: string): Promise<string> {
  await mkdir(dest, {recursive: true})
  const packed = await execa('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', dest], {cwd: dir})
  const [info] = JSON.parse(packed.stdout) as {filename: string}[]
  return join(dest, info!.filename)
}

/** `npm pack` of `test/fixtures/plugins/<fixture>`. */
export async function packFixture(fixture: string, dest: string): Promise<string> {
  return packDirectory(join(PLUGIN_FIXTURES, fixture), dest)
}

/** The agent-bundled fixture with its dependency in node_modules/, where npm pack bundles it from. */
export async function packBundledFixture(work: string, dest: string): Promise<string> {
  const dir = join(work, 'agent-bundled')
  await cp(join(PLUGIN_FIXTURES, 'agent-bundled'), dir, {recursive: true})
  await mkdir(join(dir, 'node_modules'))
  await rename(join(dir, 'bundled/scripted-dep'), join(dir, 'node_modules/scripted-dep'))
  return packDirectory(dir, dest)
}

/**
 * The agent-manifest fixture with its command-manifest.json as oclif.manifest.json
 * (a name the repository's .gitignore keeps out of git).
 */
export async function packManifestFixture(work: string, dest: string): Promise<string> {
  const dir = join(work, 'agent-manifest')
  await cp(join(PLUGIN_FIXTURES, 'agent-manifest'), dir, {recursive: true})
  await rename(join(dir, 'command-manifest.json'), join(dir, 'oclif.manifest.json'))
  return packDirectory(dir, dest)
}

/** A gzip-less tarball with exactly these entries, in order: what npm pack would never write. */
export async function writeTarball(path: string, entries: readonly {name: string; content?: string; type?: 'directory' | 'file' | 'symlink'; linkname?: string}[]): Promise<string> {
  const archive = pack()
  const chunks: Buffer[] = []
  const done = new Promise<void>((resolve, reject) => {
    archive.on('data', (chunk: unknown) => chunks.push(chunk as Buffer))
    archive.on('end', () => resolve())
    archive.on('error', reject)
  })
  for (const entry of entries) {
    const type = entry.type ?? 'file'
    if (type === 'file') archive.entry({name: entry.name, mode: 0o644}, entry.content ?? '')
    else archive.entry({name: entry.name, type, mode: 0o755, ...(entry.linkname ? {linkname: entry.linkname} : {})})
  }
  archive.finalize()
  await done
  await writeFile(path, Buffer.concat(chunks))
  return path
}

/**
 * An environment whose home, config and plugin data dir are all under `home`,
 * with npm offline (a zero-dependency tarball installs without the registry)
 * and its cache there too.
 */
export function pluginEnv(home: string): Record<string, string> {
  return {...isolatedEnv(home), npm_config_offline: 'true', npm_config_cache: join(home, '.npm')}
}

/** Marker files a plugin's scripts or code left in `home` (names start with `script-ran-`, `hooked-`, `manifest-`). */
export async function markersIn(home: string): Promise<string[]> {
  return (await readdir(home)).filter((name) => /^(script-ran-|hooked-plugin-ran|manifest-command-ran)/.test(name)).sort()
}

/** One entry of a hand-made tar: a file, or a pax extended header (`x`, for the next entry; `g`, global) holding `records`. */
export type RawTarEntry = {kind: 'file'; name: string; content: string} | {kind: 'pax' | 'global-pax'; records: Record<string, string>}

/**
 * A plain (ustar) tar written byte by byte, for headers no tar library emits on
 * request. tar-stream applies a global header's `path` to the next entry that
 * has its own pax header; node-tar (npm) ignores a global `path`: the two read
 * such a tar differently.
 */
export function rawTar(entries: readonly RawTarEntry[]): Buffer {
  const blocks: Buffer[] = []
  for (const entry of entries) {
    const body =
      entry.kind === 'file'
        ? Buffer.from(entry.content)
        : Buffer.from(Object.entries(entry.records).map(([key, value]) => paxRecord(key, value)).join(''))
    const type = entry.kind === 'file' ? '0' : entry.kind === 'pax' ? 'x' : 'g'
    blocks.push(ustarHeader(entry.kind === 'file' ? entry.name : 'PaxHeader', body.length, type), body, Buffer.alloc((512 - (body.length % 512)) % 512))
  }
  blocks.push(Buffer.alloc(1024))
  return Buffer.concat(blocks)
}

function paxRecord(key: string, value: string): string {
  const text = ` ${key}=${value}\n`
  let length = text.length + 1
  while (`${length}${text}`.length !== length) length = `${length}${text}`.length
  return `${length}${text}`
}

function ustarHeader(name: string, size: number, type: string): Buffer {
  const header = Buffer.alloc(512)
  header.write(name, 0, 100, 'utf8')
  header.write('0000644\0', 100)
  header.write('0000000\0', 108)
  header.write('0000000\0', 116)
  header.write(`${size.toString(8).padStart(11, '0')}\0`, 124)
  header.write(`${Math.floor(Date.now() / 1000).toString(8).padStart(11, '0')}\0`, 136)
  header.write('        ', 148)
  header.write(type, 156)
  header.write('ustar\0', 257)
  header.write('00', 263)
  let sum = 0
  for (const byte of header) sum += byte
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148)
  return header
}
