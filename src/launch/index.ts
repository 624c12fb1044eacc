import {readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {separateAgentArgs} from '../agents/argv.js'
import type {ManifestFlag} from './argv.js'

/**
 * The fast start path. Loading oclif costs more than the rest of `cleanroom exec`
 * put together (docs/benchmarks.md), so `cleanroom --version` and the plain forms
 * of `cleanroom exec … -- cmd` are answered without it: exec's flags are read
 * from oclif.manifest.json (written from the oclif command at build time) and
 * parsed the way oclif would; any line that could mean something else is left
 * to oclif. Resolves to false when oclif should run the line.
 * CLEANROOM_FAST_START=0 turns the path off.
 */
export async function launch(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<boolean> {
  if (env.CLEANROOM_FAST_START === '0') return false
  const [first, ...rest] = argv
  if (first === '--version' && rest.length === 0) {
    const {name, version} = readJson<{name: string; version: string}>('package.json')
    process.stdout.write(`${name}/${version} ${process.platform}-${process.arch} node-${process.version}\n`)
    return true
  }
  if (first === 'exec') {
    const manifest = readManifest()
    const command = manifest?.commands.exec
    if (!manifest || !command) return false
    const {fastExec} = await import('./exec.js')
    return fastExec(rest, command.flags, {runScript: packagePath('bin/run.js'), version: manifest.version})
  }
  return false
}

/**
 * The line to hand oclif when the fast path did not take it. `agent` lines get a
 * `--` after the agent's name (src/agents/argv.ts), so oclif never mistakes the
 * agent's own `--help` for a request for cleanroom's; the agent command's flags
 * come from the manifest. Without a manifest the line goes as it is.
 */
export function oclifArgv(argv: readonly string[]): string[] {
  const [first, ...rest] = argv
  const flags = first === 'agent' ? readManifest()?.commands.agent?.flags : undefined
  return flags ? ['agent', ...separateAgentArgs(rest, flags)] : [...argv]
}

interface Manifest {
  /** The package version the manifest was written for, as oclif's config.version. */
  version: string
  commands: Record<string, {flags: Record<string, ManifestFlag>} | undefined>
}

/** oclif.manifest.json, or undefined when it was not built (then oclif reads the commands itself). */
function readManifest(): Manifest | undefined {
  try {
    return readJson<Manifest>('oclif.manifest.json')
  } catch {
    return undefined
  }
}

function readJson<T>(file: string): T {
  return JSON.parse(readFileSync(packagePath(file), 'utf8')) as T
}

/** A path in the package: this file is dist/launch/index.js. */
function packagePath(file: string): string {
  return fileURLToPath(new URL(`../../${file}`, import.meta.url))
}
