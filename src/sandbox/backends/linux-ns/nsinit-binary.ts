import {constants} from 'node:fs'
import {access, open, readdir, stat} from 'node:fs/promises'
import {isAbsolute, join, resolve} from 'node:path'
import {fileURLToPath} from 'node:url'

const NSINIT_NAME = 'cleanroom-nsinit'

/** The package root: this module sits 4 levels below it, in src/ and in dist/. */
const PACKAGE_ROOT = resolve(fileURLToPath(new URL('../../../../', import.meta.url)))

/** The cleanroom-nsinit a sandbox is launched with, and where it came from. */
export interface NsinitBinary {
  path: string
  origin: 'environment' | 'built here' | 'prebuilt'
  /** For people: `prebuilt for linux-x64`, `built on this machine (npm run build:nsinit)`, `from CLEANROOM_NSINIT`. */
  description: string
}

export type NsinitLookup = {ok: true; binary: NsinitBinary} | {ok: false; problem: string; fix: string}

export interface NsinitLookupOptions {
  env?: NodeJS.ProcessEnv
  /** `<process.platform>-<process.arch>`, the name of the prebuilt helper's folder. */
  platform?: string
  root?: string
}

/** Where `npm run build:nsinit` puts a helper compiled on this machine. */
export function builtHerePath(root = PACKAGE_ROOT): string {
  return join(root, 'dist', 'libexec', NSINIT_NAME)
}

/** Where the package keeps its prebuilt helper for `platform` (e.g. `linux-arm64`). */
export function prebuiltPath(platform: string, root = PACKAGE_ROOT): string {
  return join(root, 'dist', 'libexec', platform, NSINIT_NAME)
}

/**
 * The helper to run, the first that exists of: `CLEANROOM_NSINIT` (an absolute
 * path), one compiled on this machine by `npm run build:nsinit`, the package's
 * prebuilt one for this platform. A helper built here comes before the prebuilt
 * one because building it is a deliberate act of the machine's owner.
 */
export async function findNsinit(options: NsinitLookupOptions = {}): Promise<NsinitLookup> {
  const env = options.env ?? process.env
  const platform = options.platform ?? `${process.platform}-${process.arch}`
  const root = options.root ?? PACKAGE_ROOT
  const override = env.CLEANROOM_NSINIT
  if (override) {
    if (!isAbsolute(override)) return {ok: false, problem: `CLEANROOM_NSINIT (${override}) is not an absolute path`, fix: 'set CLEANROOM_NSINIT to the absolute path of a cleanroom-nsinit, or unset it'}
    if (!(await isExecutable(override))) return {ok: false, problem: `CLEANROOM_NSINIT names ${override}, which is not an executable file`, fix: 'set CLEANROOM_NSINIT to the absolute path of a cleanroom-nsinit, or unset it'}
    return {ok: true, binary: {path: override, origin: 'environment', description: 'from CLEANROOM_NSINIT'}}
  }
  const builtHere = builtHerePath(root)
  if (await isExecutable(builtHere)) return {ok: true, binary: {path: builtHere, origin: 'built here', description: 'built on this machine (npm run build:nsinit)'}}
  const prebuilt = prebuiltPath(platform, root)
  if (await isExecutable(prebuilt)) return {ok: true, binary: {path: prebuilt, origin: 'prebuilt', description: `prebuilt for ${platform}`}}

  const shipped = await prebuiltPlatforms(root)
  return {
    ok: false,
    problem: `the sandbox launch helper cleanroom-nsinit is missing: the package has no prebuilt one for ${platform} (${shipped.length > 0 ? `it has ${shipped.join(', ')}` : 'it has none'}) and none was built on this machine`,
    fix: `cd ${root} && npm run build:nsinit (needs a C compiler: apt-get install -y gcc libc6-dev), or set CLEANROOM_NSINIT to a cleanroom-nsinit built elsewhere`,
  }
}

/** The platforms the package has a prebuilt helper for, e.g. `['linux-arm64', 'linux-x64']`. */
export async function prebuiltPlatforms(root = PACKAGE_ROOT): Promise<string[]> {
  const entries = await readdir(join(root, 'dist', 'libexec'), {withFileTypes: true}).catch(() => [])
  const platforms: string[] = []
  for (const entry of entries) {
    if (entry.isDirectory() && (await isExecutable(prebuiltPath(entry.name, root)))) platforms.push(entry.name)
  }
  return platforms.sort()
}

const PT_INTERP = 3

/**
 * Whether the ELF program at `path` names no program interpreter: it is linked
 * statically and runs in any root filesystem (an image sandbox holds its init with
 * nsinit itself). Reads the ELF header and program headers only.
 */
export async function isStaticallyLinked(path: string): Promise<boolean> {
  const file = await open(path, 'r')
  try {
    const header = Buffer.alloc(64)
    await file.read(header, 0, 64, 0)
    if (header.readUInt32BE(0) !== 0x7f_45_4c_46) return false
    const wide = header[4] === 2
    const little = header[5] === 1
    const u16 = (buffer: Buffer, at: number) => (little ? buffer.readUInt16LE(at) : buffer.readUInt16BE(at))
    const u32 = (buffer: Buffer, at: number) => (little ? buffer.readUInt32LE(at) : buffer.readUInt32BE(at))
    const offset = wide ? Number(little ? header.readBigUInt64LE(32) : header.readBigUInt64BE(32)) : u32(header, 28)
    const entrySize = u16(header, wide ? 54 : 42)
    const count = u16(header, wide ? 56 : 44)
    const table = Buffer.alloc(entrySize * count)
    await file.read(table, 0, table.length, offset)
    for (let entry = 0; entry < count; entry++) if (u32(table, entry * entrySize) === PT_INTERP) return false
    return true
  } finally {
    await file.close()
  }
}

async function isExecutable(path: string): Promise<boolean> {
  const isFile = await stat(path).then(
    (info) => info.isFile(),
    () => false,
  )
  return isFile && access(path, constants.X_OK).then(
    () => true,
    () => false,
  )
}
