import {createHash} from 'node:crypto'
import {homedir} from 'node:os'
import {isAbsolute, join} from 'node:path'

/**
 * The shared agent cache on the host (docs/agents.md#the-shared-agent-cache):
 *
 *     entries/<sha256>/        one npm install prefix (node_modules/…), read-only; named by its content
 *     entries/<sha256>.json    what it holds: package, version, when it was fetched
 *     index/<key>.json         which entry a package@wanted resolves to, and when the registry was last asked
 *     locks/<key>.lock         held while a package@wanted is checked or fetched
 *     staging/                 fetches in progress
 */
export interface CacheLayout {
  root: string
  entries: string
  index: string
  locks: string
  staging: string
}

/** `$CLEANROOM_CACHE_DIR/agents`, else `$XDG_CACHE_HOME/cleanroom/agents`, else `~/.cache/cleanroom/agents`. */
export function agentCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CLEANROOM_CACHE_DIR && isAbsolute(env.CLEANROOM_CACHE_DIR)) return join(env.CLEANROOM_CACHE_DIR, 'agents')
  const xdg = env.XDG_CACHE_HOME
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.cache')
  return join(base, 'cleanroom', 'agents')
}

export function cacheLayout(root: string): CacheLayout {
  return {root, entries: join(root, 'entries'), index: join(root, 'index'), locks: join(root, 'locks'), staging: join(root, 'staging')}
}

/** Where a new agent sandbox sees its entry, read-only (the agent script looks there: src/agents/script.ts). */
export const AGENT_PACKAGE_MOUNT = '/cleanroom/agent'

/** An entry's name: the SHA-256 of its tree (tree.ts). */
export const ENTRY_ID_PATTERN = /^[0-9a-f]{64}$/

/**
 * What an agent start asks the cache for: a package at a version or dist-tag,
 * fetched with the npm settings the agent declares (a registry of its own
 * makes another entry, not a clash).
 */
export interface PackageWanted {
  package: string
  /** A dist-tag (`latest`) or an exact version (`0.61.0`). */
  wanted: string
  /** The agent's `npm_config_*` variables, which the fetch's npm reads. */
  npmConfig: Record<string, string>
}

/** The file name of a package@wanted's index record and lock: readable, and unique per npm settings. */
export function indexKey(request: PackageWanted): string {
  const settings = Object.entries(request.npmConfig).sort(([a], [b]) => a.localeCompare(b))
  const suffix = settings.length === 0 ? '' : `+${createHash('sha256').update(JSON.stringify(settings)).digest('hex').slice(0, 12)}`
  return encodeURIComponent(`${request.package}@${request.wanted}${suffix}`)
}

/** An exact version is fetched once and never checked again; anything else is a dist-tag, checked once a day. */
export function isExactVersion(wanted: string): boolean {
  return EXACT_VERSION.test(wanted)
}

export const EXACT_VERSION = /^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/
export const DIST_TAG = /^[A-Za-z][A-Za-z0-9._-]{0,63}$/

/** The agent's environment variables npm reads as its settings. */
export function npmConfigOf(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([name]) => name.toLowerCase().startsWith('npm_config_')))
}
