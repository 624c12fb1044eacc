import {execa} from 'execa'
import {readFileSync} from 'node:fs'
import {createRequire} from 'node:module'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {CleanroomError} from '../errors/index.js'
import {isRecord} from '../util/record.js'

/** A registry fetch can be slow; a hung one should still end. */
const NPM_TIMEOUT_MS = 5 * 60_000

export interface NpmOptions {
  cwd: string
  /** Show npm's own output on stderr (`--verbose` of the plugins commands). */
  verbose?: boolean
}

/**
 * The one place cleanroom runs npm for plugins. npm runs with the user's own
 * settings (registry, proxy, cache, auth) but never runs a lifecycle script,
 * of the plugin or of any dependency, and links no package's commands: both
 * `--ignore-scripts` and `--no-bin-links` are on the command line, where no
 * npmrc or environment variable overrides them. PATH is the caller's: unlike
 * `npm run`, nothing of node_modules/.bin is put in front of it.
 */
export async function runNpm(args: readonly string[], options: NpmOptions): Promise<string> {
  const {command, prefix} = npmCommand()
  const argv = [...prefix, ...args, '--ignore-scripts', '--no-bin-links', '--no-audit', '--no-fund', '--no-update-notifier', ...(options.verbose ? ['--loglevel=http'] : [])]
  const result = await execa(command, argv, {
    cwd: options.cwd,
    env: {npm_config_ignore_scripts: 'true', npm_config_bin_links: 'false'},
    extendEnv: true,
    stdin: 'ignore',
    stderr: options.verbose ? ['pipe', 'inherit'] : 'pipe',
    reject: false,
    timeout: NPM_TIMEOUT_MS,
  })
  if (result.exitCode !== 0) {
    const why = result.timedOut ? `timed out after ${NPM_TIMEOUT_MS / 1000}s` : (npmErrorOf(result.stderr) ?? `exit ${result.exitCode}`)
    throw new CleanroomError('plugin_install_failed', `npm ${args.join(' ')} failed: ${why}`, {
      suggestions: ['Run the plugins command again with --verbose to see npm\'s output.'],
      details: {stderr: result.stderr},
    })
  }
  return result.stdout
}

/** Whether the registry has a package of that name (for the friendly-name form of plugins install). */
export async function registryHas(name: string): Promise<boolean> {
  return runNpm(['view', name, 'name'], {cwd: tmpdir()}).then(
    () => true,
    () => false,
  )
}

/**
 * The npm that @oclif/plugin-plugins runs (its own pinned copy, run with this
 * Node), so `cleanroom plugins uninstall` works on what was installed here;
 * the `npm` on PATH when that copy is missing.
 */
function npmCommand(): {command: string; prefix: string[]} {
  try {
    const pluginPlugins = fileURLToPath(import.meta.resolve('@oclif/plugin-plugins'))
    const manifestPath = createRequire(pluginPlugins).resolve('npm/package.json')
    const manifest: unknown = JSON.parse(readFileSync(manifestPath, 'utf8'))
    const bin = isRecord(manifest) && isRecord(manifest.bin) ? manifest.bin.npm : undefined
    if (typeof bin === 'string') return {command: process.execPath, prefix: [join(dirname(manifestPath), bin)]}
  } catch {
    // Not resolvable: fall back to the npm on PATH.
  }
  return {command: 'npm', prefix: []}
}

/** npm's explanation (e.g. "404 Not Found - GET …"), without its error code and log file lines. */
function npmErrorOf(stderr: string): string | undefined {
  const lines = stderr
    .split('\n')
    .filter((line) => line.startsWith('npm error ') && !/^npm error (code |A complete log|errno )/.test(line))
    .map((line) => line.slice('npm error '.length).trim())
    .filter((line) => line !== '')
  return lines.length > 0 ? lines.slice(0, 3).join('; ') : undefined
}
