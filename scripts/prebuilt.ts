/**
 * The prebuilt cleanroom-nsinit helpers the package ships, one per platform in
 * dist/libexec/<platform>/ (chosen at run time by process.arch, see
 * src/sandbox/backends/linux-ns/nsinit-binary.ts): how they are compiled and
 * how a binary is checked to be one of them. docs/install.md says why.
 */
import {execa} from 'execa'
import {constants} from 'node:fs'
import {access, mkdir, readdir, rm} from 'node:fs/promises'
import {delimiter, dirname, isAbsolute, join} from 'node:path'
import {fileURLToPath} from 'node:url'

export const ROOT = fileURLToPath(new URL('..', import.meta.url))
/** The helper is every .c file of this folder (nsinit.c and what it is split into), compiled together. */
export const NSINIT_SOURCE_DIR = 'src/sandbox/backends/linux-ns'

export interface PrebuiltTarget {
  /** `<process.platform>-<process.arch>`: the folder under dist/libexec/ */
  platform: string
  arch: NodeJS.Architecture
  /** GNU triplet of Debian's cross compiler for this target: `<triplet>-gcc` */
  triplet: string
  /** The Debian packages of that cross compiler and its C library */
  crossPackages: string[]
  /** What `readelf -h` prints as Machine */
  elfMachine: string
}

export const PREBUILT_TARGETS: readonly PrebuiltTarget[] = [
  {platform: 'linux-x64', arch: 'x64', triplet: 'x86_64-linux-gnu', crossPackages: ['gcc-x86-64-linux-gnu', 'libc6-dev-amd64-cross'], elfMachine: 'Advanced Micro Devices X86-64'},
  {platform: 'linux-arm64', arch: 'arm64', triplet: 'aarch64-linux-gnu', crossPackages: ['gcc-aarch64-linux-gnu', 'libc6-dev-arm64-cross'], elfMachine: 'AArch64'},
]

/**
 * Static (no loader, no shared libc: one binary serves glibc and musl distributions
 * alike) yet position-independent, so the kernel still randomises where it loads.
 */
const CFLAGS = ['-O2', '-Wall', '-Werror', '-static-pie', '-s']

export function prebuiltFile(target: PrebuiltTarget, root = ROOT): string {
  return join(root, 'dist', 'libexec', target.platform, 'cleanroom-nsinit')
}

/** The compiler for `target` on this machine: the native one for its own arch, else Debian's cross compiler. */
export function compilerFor(target: PrebuiltTarget): {command: string; packages: string[]; native: boolean} {
  const native = process.platform === 'linux' && process.arch === target.arch
  return native ? {command: process.env.CC || 'cc', packages: ['gcc', 'libc6-dev'], native} : {command: `${target.triplet}-gcc`, packages: target.crossPackages, native}
}

export type BuildResult =
  | {target: PrebuiltTarget; built: string}
  | {target: PrebuiltTarget; native: boolean; missingCompiler: string; install: string}
  | {target: PrebuiltTarget; failed: string}

/**
 * Compiles nsinit.c for `target` into dist/libexec/<platform>/, or says which
 * compiler is missing. The previous binary goes first: one left from an older
 * nsinit.c must never ship beside the code of a newer one.
 */
export async function buildPrebuilt(target: PrebuiltTarget, root = ROOT): Promise<BuildResult> {
  const output = prebuiltFile(target, root)
  await rm(output, {force: true})
  const compiler = compilerFor(target)
  if (!(await onPath(compiler.command))) return {target, native: compiler.native, missingCompiler: compiler.command, install: `apt-get install -y ${compiler.packages.join(' ')}`}
  await mkdir(dirname(output), {recursive: true})
  // The compiler's own messages go straight to stderr.
  const sources = (await readdir(join(root, NSINIT_SOURCE_DIR))).filter((name) => name.endsWith('.c')).sort().map((name) => join(root, NSINIT_SOURCE_DIR, name))
  const result = await execa(compiler.command, [...CFLAGS, '-o', output, ...sources], {stdio: 'inherit', reject: false})
  if (result.failed) return {target, failed: `${compiler.command} failed (${result.exitCode === undefined ? result.shortMessage : `exit ${result.exitCode}`})`}
  return {target, built: output}
}

/**
 * What is wrong with `file` as the prebuilt helper of `target`: not an ELF for
 * its machine, or linked dynamically (a program interpreter or a needed library).
 * Read with binutils' readelf, which reads every architecture's ELF.
 */
export async function prebuiltProblems(file: string, target: PrebuiltTarget): Promise<string[]> {
  const readelf = async (flag: string) => (await execa('readelf', [flag, '--wide', file], {env: {LC_ALL: 'C'}})).stdout
  const problems: string[] = []
  const header = await readelf('-h').catch((error: unknown) => {
    problems.push(`${file}: readelf -h failed: ${error instanceof Error ? error.message : String(error)}`)
    return ''
  })
  if (!header) return problems
  const machine = /^\s*Machine:\s*(.+)$/m.exec(header)?.[1]?.trim()
  const elfClass = /^\s*Class:\s*(.+)$/m.exec(header)?.[1]?.trim()
  if (machine !== target.elfMachine || elfClass !== 'ELF64') problems.push(`${file}: ${elfClass ?? '?'} for ${machine ?? '?'}, expected ELF64 for ${target.elfMachine}`)
  if (/Requesting program interpreter/.test(await readelf('-l'))) problems.push(`${file}: dynamically linked (it names a program interpreter)`)
  const needed = [...(await readelf('-d')).matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((match) => match[1])
  if (needed.length > 0) problems.push(`${file}: dynamically linked (needs ${needed.join(', ')})`)
  return problems
}

async function onPath(command: string): Promise<boolean> {
  const candidates = isAbsolute(command) ? [command] : (process.env.PATH ?? '').split(delimiter).filter(isAbsolute).map((dir) => join(dir, command))
  for (const candidate of candidates) {
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return true
  }
  return false
}
