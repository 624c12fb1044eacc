import {randomBytes} from 'node:crypto'
import {lstat, mkdir, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import type {Readable} from 'node:stream'

import {type CacheLayout, cacheLayout, DIST_TAG, EXACT_VERSION, indexKey, isExactVersion, type PackageWanted} from '../agents/cache/layout.js'
import {withLock} from '../agents/cache/lock.js'
import {addEntry, type IndexRecord, readEntry, readIndex, removeStaging, touchIndex, writeIndex} from '../agents/cache/store.js'
import {sealTree} from '../agents/cache/tree.js'
import {QUIET_NPM_ENV} from '../agents/npm-env.js'
import {NPM_PACKAGE_PATTERN} from '../agents/spec.js'
import type {BackendName} from '../config/schema.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import {DEFAULT_POLICY, withAdditionalAllow} from '../policy/compile.js'
import type {AllowRuleInput} from '../policy/schema.js'
import {isEnvName} from '../util/env-name.js'
import {extractUnder} from '../util/tar-extract.js'
import {visibleText} from '../util/visible.js'
import {badRequest} from './http.js'
import type {Logger, SandboxManager} from './manager.js'
import {agentCacheKind} from './agent-cache-kind.js'
import {parseAllowRules, parseBackendName} from './requests.js'
import type {CacheKind} from './system/caches.js'

/** How long `@latest` (any dist-tag) is taken as it was last seen before the registry is asked again. */
export const CHECK_INTERVAL_MS = 86_400_000
/** A fetch of the biggest agent (Codex with its platform binaries, ~400 MB) on a slow link. */
const INSTALL_TIMEOUT_MS = 30 * 60_000
const VIEW_TIMEOUT_MS = 2 * 60_000
const LOCK_TIMEOUT_MS = INSTALL_TIMEOUT_MS + 5 * 60_000
/** Of npm's output, what an error message quotes. */
const OUTPUT_TAIL = 4096
/** Where the fetch sandbox's npm installs: the sandbox user's home, read out as a tar afterwards. */
const PREFIX = '/home/cleanroom/agent'
/** Replaces each file with more than one name under "$1" by a copy of its own (cp -p, then rename over it). */
const UNLINK_HARD_LINKS = 'find "$1" -type f -links +1 -exec sh -c \'for f; do cp -p -- "$f" "$f.cleanroom-copy" && mv -f -- "$f.cleanroom-copy" "$f" || exit 1; done\' sh {} +'

/** POST /v1/agent-packages: make sure a package@wanted is in the shared cache, and say which entry holds it. */
export interface AgentPackageRequest extends PackageWanted {
  /** The agent's network needs: the only hosts the fetch's sandbox may reach. */
  network: AllowRuleInput[]
  /** Ask the registry now even when it was asked less than a day ago. */
  update: boolean
  backend: BackendName
}

export interface AgentPackageAnswer {
  package: string
  wanted: string
  version: string
  entry: string
  checked_at: string
  /** What this request did: nothing (the cache was fresh), asked the registry, or fetched a release. */
  action: 'cached' | 'checked' | 'fetched'
  /** The check failed and the release cached before is used: why. */
  warning?: string
}

/** What a create request's `agent_package` becomes: the entry to mount, and what it holds. */
export interface AgentPackageMount {
  entry: string
  package: string
  version: string
  /** The entry's directory on the host. */
  source: string
}

/**
 * The shared agent cache as the daemon keeps it (docs/agents.md#the-shared-agent-cache).
 * A package is fetched by npm in a sandbox of its own whose policy is the agent's
 * network needs and nothing else, so the fetch goes through the same egress proxy
 * and rules as the agent would; the tree npm wrote is read out of that sandbox as
 * untrusted input (extractUnder), sealed read-only under the hash of its content,
 * and mounted read-only into the agent's sandboxes. The registry is asked once a
 * day per package for this machine; concurrent starts wait for one check.
 */
export class AgentPackages {
  private readonly layout: CacheLayout
  private readonly running = new Map<string, Promise<AgentPackageAnswer>>()
  /** The cache as `system df` and `system prune` see it. */
  readonly cacheKind: CacheKind

  constructor(
    root: string,
    private readonly manager: SandboxManager,
    private readonly log: Logger,
  ) {
    this.layout = cacheLayout(root)
    this.cacheKind = agentCacheKind(root, manager)
  }

  async resolve(request: AgentPackageRequest): Promise<AgentPackageAnswer> {
    const key = indexKey(request)
    const asked = Date.now()
    const fresh = await this.fresh(key, request, asked)
    if (fresh) return fresh
    // One check per package@wanted at a time in this daemon; the lock file covers daemons sharing the cache.
    const pending = this.running.get(key) ?? this.refreshLocked(key, request, asked).finally(() => this.running.delete(key))
    this.running.set(key, pending)
    return pending
  }

  /** The entry of a create request's `agent_package`, checked to be an entry of this cache. */
  async mount(entry: unknown): Promise<AgentPackageMount> {
    if (typeof entry !== 'string') throw badRequest('agent_package must be the id of an entry of the agent cache')
    const record = await readEntry(this.layout, entry)
    if (!record) throw badRequest(`agent_package ${entry.slice(0, 80)} is not an entry of the agent cache (${this.layout.entries})`)
    return {entry, package: record.package, version: record.version, source: join(this.layout.entries, entry)}
  }

  /** The answer without asking the registry, when the cache has the package and it is fresh enough. */
  private async fresh(key: string, request: AgentPackageRequest, asked: number): Promise<AgentPackageAnswer | undefined> {
    const record = await readIndex(this.layout, key)
    if (!record || !(await readEntry(this.layout, record.entry))) return undefined
    const checked = Date.parse(record.checked_at)
    // With --update, only a check that began after this request counts.
    const recent = request.update ? checked >= asked : isExactVersion(request.wanted) || asked - checked < CHECK_INTERVAL_MS
    if (!recent) return undefined
    await touchIndex(this.layout, key)
    return answer(record, 'cached')
  }

  private async refreshLocked(key: string, request: AgentPackageRequest, asked: number): Promise<AgentPackageAnswer> {
    await mkdir(this.layout.locks, {recursive: true, mode: 0o700})
    return withLock(join(this.layout.locks, `${key}.lock`), async () => (await this.fresh(key, request, asked)) ?? this.refresh(key, request), {
      timeoutMs: LOCK_TIMEOUT_MS,
      what: `${request.package}@${request.wanted}`,
    })
  }

  /** Asks the registry what `wanted` is now and fetches that release when the cache lacks it. */
  private async refresh(key: string, request: AgentPackageRequest): Promise<AgentPackageAnswer> {
    const previous = await readIndex(this.layout, key)
    const usable = previous && (await readEntry(this.layout, previous.entry)) ? previous : undefined
    const spec = `${request.package}@${request.wanted}`
    const policy = withAdditionalAllow(DEFAULT_POLICY, request.network)
    const sandbox = await this.manager.create({backend: request.backend, policy, policySource: null, workspaceSource: null, allowAll: false})
    const id = sandbox.sandbox_id
    this.log(`agent cache: checking ${spec} in sandbox ${id}`)
    try {
      let version: string
      try {
        version = await this.latestVersion(id, request)
      } catch (error) {
        if (!usable) throw error
        // The registry cannot be asked (offline, not allowed): the release cached before serves for another day.
        const record = {...usable, checked_at: new Date().toISOString()}
        await writeIndex(this.layout, key, record)
        return answer(record, 'checked', `could not ask the registry for ${spec} (${messageOf(error).split('\n')[0]}): using ${usable.version}, cached before`)
      }
      const now = new Date().toISOString()
      if (usable?.version === version) {
        const record = {...usable, checked_at: now}
        await writeIndex(this.layout, key, record)
        return answer(record, 'checked')
      }
      const entry = await this.fetch(id, request, version)
      const record: IndexRecord = {package: request.package, wanted: request.wanted, version, entry, checked_at: now}
      await writeIndex(this.layout, key, record)
      this.log(`agent cache: ${request.package} ${version} is entry ${entry}`)
      return answer(record, 'fetched')
    } finally {
      await this.manager.remove(id).catch((error: unknown) => this.log(`agent cache: could not remove sandbox ${id}: ${messageOf(error)}`))
    }
  }

  /** `npm view <package>@<wanted> version` in the sandbox: the exact version `wanted` names now. */
  private async latestVersion(sandboxId: string, request: AgentPackageRequest): Promise<string> {
    const spec = `${request.package}@${request.wanted}`
    const view = await this.npm(sandboxId, request, ['view', '--json', spec, 'version'], VIEW_TIMEOUT_MS)
    let version: unknown
    try {
      version = JSON.parse(view.stdout)
    } catch {
      version = undefined
    }
    if (Array.isArray(version)) version = version.at(-1)
    if (typeof version !== 'string' || !EXACT_VERSION.test(version)) {
      throw new CleanroomError('agent_install_failed', `npm view ${spec} gave no version: ${visibleText(view.stdout.trim().slice(0, 200))}`)
    }
    return version
  }

  /** npm installs the release in the sandbox; its tree comes out as a tar, unpacked here as untrusted input, and is sealed. */
  private async fetch(sandboxId: string, request: AgentPackageRequest, version: string): Promise<string> {
    const spec = `${request.package}@${version}`
    await this.npm(sandboxId, request, ['install', '--prefix', PREFIX, '--no-audit', '--no-fund', '--no-save', spec], INSTALL_TIMEOUT_MS)
    // Install scripts hard-link platform binaries into place (opencode-ai); the unpacker makes no hard links: copies instead.
    await this.inSandbox(sandboxId, request, ['sh', '-c', UNLINK_HARD_LINKS, 'sh', PREFIX], VIEW_TIMEOUT_MS, 'copying hard-linked files')
    await mkdir(this.layout.staging, {recursive: true, mode: 0o700})
    const staging = join(this.layout.staging, randomBytes(8).toString('hex'))
    try {
      await extractUnder(staging, await this.manager.readArchive(sandboxId, PREFIX), {from: 'agent', to: 'tree'})
      const tree = join(staging, 'tree')
      await requireInstalled(tree, request.package, version)
      const {id, bytes} = await sealTree(tree)
      await addEntry(this.layout, tree, id, {package: request.package, version, fetched_at: new Date().toISOString(), bytes})
      return id
    } finally {
      await removeStaging(staging)
    }
  }

  /** Runs npm in the sandbox; a failure is agent_install_failed with the end of npm's output. */
  private async npm(sandboxId: string, request: AgentPackageRequest, args: string[], timeoutMs: number): Promise<{stdout: string}> {
    return this.inSandbox(sandboxId, request, ['npm', ...args], timeoutMs, `npm ${args[0]}`)
  }

  private async inSandbox(sandboxId: string, request: AgentPackageRequest, argv: string[], timeoutMs: number, what: string): Promise<{stdout: string}> {
    const env = {...request.npmConfig, ...QUIET_NPM_ENV}
    const process = await this.manager.run(sandboxId, {argv, env, tty: false, cwd: '/home/cleanroom'})
    process.stdin.end()
    const timer = setTimeout(() => process.signal('SIGKILL'), timeoutMs)
    try {
      const [stdout, stderr, status] = await Promise.all([tail(process.stdout), process.stderr ? tail(process.stderr) : Promise.resolve(''), process.exited])
      if (status.exit_code === 0) return {stdout}
      const why = status.signal === 'SIGKILL' ? `was stopped after ${Math.round(timeoutMs / 1000)} s` : `exited with ${status.exit_code}`
      throw new CleanroomError('agent_install_failed', `${what} of ${request.package} ${why} in the agent cache's fetch sandbox:\n${visibleText(stderr.trim())}`, {
        suggestions: [
          `The fetch may reach only the agent's network hosts (${request.network.map((rule) => `${rule.host}:${rule.ports.join(',')}`).join(', ') || 'none'}); the npm registry must be one of them`,
        ],
      })
    } finally {
      clearTimeout(timer)
    }
  }
}

function answer(record: IndexRecord, action: AgentPackageAnswer['action'], warning?: string): AgentPackageAnswer {
  return {package: record.package, wanted: record.wanted, version: record.version, entry: record.entry, checked_at: record.checked_at, action, ...(warning ? {warning} : {})}
}

/** The package npm put in the tree is the one asked for: a regular package.json of that name and version. */
async function requireInstalled(tree: string, name: string, version: string): Promise<void> {
  const path = join(tree, 'node_modules', ...name.split('/'), 'package.json')
  const stats = await lstat(path).catch(() => undefined)
  let manifest: {name?: unknown; version?: unknown} = {}
  if (stats?.isFile()) manifest = JSON.parse(await readFile(path, 'utf8').catch(() => '{}')) as typeof manifest
  if (manifest.name !== name || manifest.version !== version) {
    throw new CleanroomError('agent_install_failed', `npm install did not leave ${name}@${version} in the fetch sandbox (found ${JSON.stringify(manifest.name)}@${JSON.stringify(manifest.version)})`)
  }
}

/** The last OUTPUT_TAIL characters of a stream. */
async function tail(stream: Readable): Promise<string> {
  let text = ''
  for await (const chunk of stream) text = (text + (chunk as Buffer).toString('utf8')).slice(-OUTPUT_TAIL)
  return text
}

/** Checks the body of POST /v1/agent-packages. */
export function parseAgentPackageRequest(body: Record<string, unknown>, defaultBackend: BackendName): AgentPackageRequest {
  const {package: name, wanted = 'latest', network = [], npm_config: npmConfig = {}, update = false} = body
  if (typeof name !== 'string' || !NPM_PACKAGE_PATTERN.test(name)) throw badRequest('package must be an npm package name without a version')
  if (typeof wanted !== 'string' || !(EXACT_VERSION.test(wanted) || DIST_TAG.test(wanted))) throw badRequest('wanted must be an exact version (1.2.3) or a dist-tag (latest)')
  if (typeof update !== 'boolean') throw badRequest('update must be true or false')
  if (typeof npmConfig !== 'object' || npmConfig === null || Array.isArray(npmConfig)) throw badRequest('npm_config must be an object of npm_config_* variables')
  for (const [variable, value] of Object.entries(npmConfig)) {
    if (!isEnvName(variable) || !variable.toLowerCase().startsWith('npm_config_')) throw badRequest(`npm_config: ${JSON.stringify(variable)} is not an npm_config_* variable`)
    if (typeof value !== 'string' || value.includes('\0')) throw badRequest(`npm_config: ${variable} must be a string without NUL`)
  }
  return {
    package: name,
    wanted,
    network: parseAllowRules(network, 'network'),
    npmConfig: npmConfig as Record<string, string>,
    update,
    backend: parseBackendName(body.backend, defaultBackend),
  }
}
