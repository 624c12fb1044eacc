/**
 * What the npm package must hold, and all it may hold: its licence, what `cleanroom` runs
 * (bin/run.js, the compiled dist/, the oclif manifest, the prebuilt helpers, the
 * built-in agent plugins bundled in node_modules/) and the C sources of the helper
 * for `npm run build:nsinit` on other platforms. No tests, benchmarks, TypeScript
 * sources or source maps.
 */
import {execa} from 'execa'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {NSINIT_SOURCE_DIR, PREBUILT_TARGETS, ROOT} from './prebuilt.js'

export const BUILT_IN_AGENT_PLUGINS = ['@cleanroom/agent-claude', '@cleanroom/agent-codex', '@cleanroom/agent-gemini', '@cleanroom/agent-opencode']

const REQUIRED = [
  'package.json',
  'README.md',
  'LICENSE',
  'bin/run.js',
  'oclif.manifest.json',
  'dist/fast/index.js',
  `${NSINIT_SOURCE_DIR}/nsinit.c`,
  ...PREBUILT_TARGETS.map((target) => `dist/libexec/${target.platform}/cleanroom-nsinit`),
  ...BUILT_IN_AGENT_PLUGINS.map((name) => `node_modules/${name}/package.json`),
]

const ALLOWED: RegExp[] = [
  /^(package\.json|README\.md|LICENSE|bin\/run\.js|oclif\.manifest\.json)$/,
  // dist/launch/ is bundled into dist/fast/ and never loaded itself.
  /^dist\/(?!launch\/)[\w/-]+\.js$/,
  new RegExp(`^dist/libexec/(${PREBUILT_TARGETS.map((target) => target.platform).join('|')})/cleanroom-nsinit$`),
  new RegExp(`^${NSINIT_SOURCE_DIR}/[\\w-]+\\.[ch]$`),
  new RegExp(`^node_modules/(${BUILT_IN_AGENT_PLUGINS.join('|')})/(package\\.json|README\\.md)$`),
]

/**
 * Problems with a package holding `files` (paths relative to its root, as `npm
 * pack --json` lists them) whose oclif manifest names `commandFiles`.
 */
export function packageContentProblems(files: readonly string[], commandFiles: readonly string[]): string[] {
  const present = new Set(files)
  const missing = [...REQUIRED, ...commandFiles].filter((file) => !present.has(file)).map((file) => `missing: ${file}`)
  const unexpected = files.filter((file) => !ALLOWED.some((pattern) => pattern.test(file))).map((file) => `not meant to be in the package: ${file}`)
  return [...missing, ...unexpected]
}

export interface PackResult {
  name: string
  version: string
  filename: string
  /** bytes of the .tgz */
  size: number
  unpackedSize: number
  entryCount: number
  files: {path: string; size: number}[]
}

/** `npm pack --json` of the project as it is built now (no lifecycle scripts: the build is not redone). */
export async function packProject(options: {destination?: string; dryRun?: boolean} = {}): Promise<PackResult> {
  const args = ['pack', '--json', '--ignore-scripts', ...(options.dryRun ? ['--dry-run'] : []), ...(options.destination ? ['--pack-destination', options.destination] : [])]
  const {stdout} = await execa('npm', args, {cwd: ROOT})
  const [result] = JSON.parse(stdout) as PackResult[]
  if (!result) throw new Error('npm pack --json printed no package')
  return result
}

/** The file of every command in the project's oclif.manifest.json (written by the build). */
export async function manifestCommandFiles(root = ROOT): Promise<string[]> {
  const manifest = JSON.parse(await readFile(join(root, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {relativePath: string[]}>}
  return Object.values(manifest.commands).map((command) => command.relativePath.join('/'))
}
