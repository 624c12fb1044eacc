import {readFile} from 'node:fs/promises'
import {posix} from 'node:path'
import {Readable} from 'node:stream'
import {buffer as readAll} from 'node:stream/consumers'
import {pack} from 'tar-stream'

import {normalizeCredentialTarget, SANDBOX_HOME} from '../agents/credential-paths.js'
import {caEnv, type SandboxEgress} from '../daemon/egress.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import type {Resolver} from '../egress/addresses.js'
import {dialChecked} from '../egress/dial.js'
import type {BackendRuntime, SandboxBackend} from '../sandbox/backend.js'
import type {SandboxRecord} from '../sandbox/types.js'
import {trustBundle, upstreamRoots} from './ca.js'
import {SandboxGateway, TRUST_BUNDLE} from './gateway.js'
import {HostLoginStore, setAt} from './logins.js'
import {phantomOf} from './oauth.js'
import {jsonAt, SecretResolver} from './secrets.js'
import {routeUrl} from './spec.js'
import {loadCredentialState, type LoginState, mergeGrant, type SandboxCredentialState, type TokenSet} from './state.js'
import type {GrantRequest, GrantSummary} from './wire.js'
import {withTokens} from './logins.js'

export interface CredentialGatewayOptions {
  /** The daemon's state directory: login locks and private login stores. */
  stateRoot: string
  resolver?: Resolver
  /** More roots the gateway trusts upstream (a test's own TLS servers). */
  upstreamCa?: readonly string[]
}

/** Where a sandbox is, for its gateway. */
export interface GatewaySandbox {
  record: SandboxRecord
  sandboxDir: string
  egress: SandboxEgress
  backend: SandboxBackend
  runtime: BackendRuntime
}

/**
 * The daemon's credential gateways, one per sandbox that was granted
 * credentials, started when the grant comes and again when a restarted
 * daemon adopts the sandbox.
 */
export class CredentialGateways {
  private readonly gateways = new Map<string, SandboxGateway>()
  private readonly secrets = new SecretResolver()
  private roots: Promise<string[]> | undefined

  constructor(private readonly options: CredentialGatewayOptions) {}

  /** Serves a sandbox's saved grant again (a daemon that adopts a kept sandbox). */
  async attach(sandbox: GatewaySandbox): Promise<void> {
    try {
      const state = await loadCredentialState(sandbox.sandboxDir)
      if (state === undefined) return
      const gateway = await this.start(sandbox, state)
      for (const login of state.logins.filter((candidate) => candidate.host || candidate.own)) {
        gateway.setDelivered(login, (await gateway.tokenStore(login).read()) ?? {})
      }
      if (await gateway.prepareCa()) await this.writeTrustBundle(sandbox, gateway)
    } catch (error) {
      // A grant that cannot be read is not dropped silently: the sandbox gets no egress until it can be.
      throw new Error(`its credential gateway could not be served again: ${messageOf(error)}`)
    }
  }

  /** The grant of `POST /v1/sandboxes/{id}/credentials`: what the sandbox gets, said back. */
  async grant(sandbox: GatewaySandbox, request: GrantRequest): Promise<GrantSummary> {
    const existing = this.gateways.get(sandbox.record.sandbox_id)
    const state = mergeGrant(existing?.state() ?? (await loadCredentialState(sandbox.sandboxDir)), request.routes, request.logins, request.write_back)
    const gateway = existing ?? (await this.start(sandbox, state))

    const sources = new Map<string, string | undefined>()
    for (const route of request.routes) sources.set(route.name, await this.secrets.available(route.secret))
    const hostLogins = new Map<string, {content: unknown; tokens: TokenSet}>()
    for (const login of request.logins) {
      const store = new HostLoginStore(login, this.options.stateRoot, request.write_back)
      const tokens = await store.read()
      if (tokens?.access !== undefined || tokens?.refresh !== undefined) hostLogins.set(login.name, {content: await readJson(login.host_file), tokens})
    }
    const provided = (name: string) => request.routes.find((route) => route.name === name)?.secret.some((source) => 'provided' in source) === true
    for (const route of state.routes) {
      if (!request.routes.some((granted) => granted.name === route.spec.name)) continue
      const standsIn = route.spec.alternative_to !== undefined && hostLogins.has(route.spec.alternative_to)
      route.active = sources.get(route.spec.name) !== undefined && (!standsIn || provided(route.spec.name))
    }
    const summary: GrantSummary = {routes: [], logins: [], args: [], env: []}
    const files: {path: string; content: string}[] = []
    for (const spec of request.logins) {
      const login = state.logins.find((candidate) => candidate.spec.name === spec.name)!
      const host = hostLogins.get(spec.name)
      const replaced = state.routes.some((route) => route.active && route.spec.alternative_to === spec.name)
      login.host = host !== undefined && !replaced
      login.intercept = login.host || login.own !== undefined || !replaced
      if (login.host && host) {
        files.push({path: normalizeCredentialTarget(spec.file), content: `${JSON.stringify(phantomisedFile(login, host.content, host.tokens), null, 2)}\n`})
        gateway.setDelivered(login, host.tokens)
      }
      const intercepted = login.intercept ? [...spec.token_endpoints, ...spec.api_hosts].map((entry) => (entry.port === 443 ? entry.host : `${entry.host}:${entry.port}`)) : []
      summary.logins.push({name: spec.name, file: spec.file, state: login.host ? 'in use' : replaced ? 'not used: an API key route is in use' : 'no host login', login_command: spec.login_command, intercepted: [...new Set(intercepted)]})
    }
    await gateway.replaceState(state)
    const renewed = await gateway.prepareCa()
    if (files.length > 0) await writeIntoHome(sandbox, files)
    if (renewed || (gateway.ca && files.length > 0)) await this.writeTrustBundle(sandbox, gateway)

    for (const route of state.routes.filter((candidate) => request.routes.some((granted) => granted.name === candidate.spec.name))) {
      const intercepted = route.active && gateway.ca ? (route.spec.hosts ?? []).map((entry) => (entry.port === 443 ? entry.host : `${entry.host}:${entry.port}`)) : []
      summary.routes.push({name: route.spec.name, upstream: route.spec.upstream, url: routeUrl(route.spec.name), source: route.active ? (sources.get(route.spec.name) ?? null) : null, intercepted})
    }
    summary.args = gateway.args()
    summary.env = Object.keys(gateway.env()).sort()
    return summary
  }

  /** Forgets a sandbox's gateway (its egress closes it). */
  detach(sandboxId: string): void {
    this.gateways.delete(sandboxId)
  }

  private async start(sandbox: GatewaySandbox, state: SandboxCredentialState): Promise<SandboxGateway> {
    const {record} = sandbox
    this.roots ??= upstreamRoots(Object.values(caEnv()), this.options.upstreamCa)
    const gateway = new SandboxGateway(
      {
        sandboxId: record.sandbox_id,
        sandboxDir: sandbox.sandboxDir,
        sandboxHome: SANDBOX_HOME,
        stateRoot: this.options.stateRoot,
        audit: sandbox.egress.auditSink,
        auditRefusal: () => sandbox.egress.auditRefusal(),
        secrets: this.secrets,
        dial: (host, port) => dialChecked(host, port, {policy: record.policy, allowAll: record.allow_all === true, ...(this.options.resolver && {resolver: this.options.resolver})}),
        roots: await this.roots,
      },
      state,
    )
    await sandbox.egress.addService(sandbox.backend, sandbox.runtime, gateway)
    this.gateways.set(record.sandbox_id, gateway)
    return gateway
  }

  private async writeTrustBundle(sandbox: GatewaySandbox, gateway: SandboxGateway): Promise<void> {
    if (gateway.ca === undefined) return
    await writeIntoHome(sandbox, [{path: TRUST_BUNDLE, content: await trustBundle(gateway.ca.certificate, Object.values(caEnv()))}], 0o644)
  }
}

/**
 * The host's auth file with the sandbox's phantoms in place of the tokens,
 * the login's other secret fields null, and every other field as it is.
 * Refused when a real token still shows anywhere in it (copied into another field).
 */
function phantomisedFile(login: LoginState, content: unknown, tokens: TokenSet): Record<string, unknown> {
  const phantoms = {
    ...(tokens.access !== undefined && {access: phantomOf(login, 'access', tokens.access)}),
    ...(tokens.refresh !== undefined && {refresh: phantomOf(login, 'refresh', tokens.refresh)}),
    ...(tokens.id !== undefined && {id: phantomOf(login, 'id', tokens.id)}),
  }
  const file = withTokens(login.spec, content, phantoms, tokens.expires_at)
  for (const path of login.spec.omit ?? []) if (jsonAt(file, path) !== undefined) setAt(file, path, null)
  const text = JSON.stringify(file)
  const leaked = [tokens.access, tokens.refresh, tokens.id].filter((token): token is string => token !== undefined && text.includes(token))
  if (leaked.length > 0) {
    throw new CleanroomError('credential_source_unreadable', `the auth file ${login.spec.host_file} holds its tokens in fields the login ${login.spec.name} does not name: the sandbox would see them, so it gets no copy`, {
      suggestions: ['Name those fields in the login\'s tokens or omit (docs/credentials.md), or use credentials: copy for this agent'],
    })
  }
  return file
}

/** Files for the sandbox user's home, in one archive unpacked there by the backend (as the sandbox user). */
async function writeIntoHome(sandbox: GatewaySandbox, files: readonly {path: string; content: string}[], mode = 0o600): Promise<void> {
  const archive = pack()
  const tar = readAll(archive)
  const directories = new Set<string>()
  for (const file of files) {
    const segments = posix.normalize(file.path).split('/')
    for (let depth = 1; depth < segments.length; depth++) {
      const directory = segments.slice(0, depth).join('/')
      if (directories.has(directory)) continue
      directories.add(directory)
      archive.entry({name: `${directory}/`, type: 'directory', mode: 0o700, uid: 1000, gid: 1000})
    }
    archive.entry({name: file.path, type: 'file', mode, uid: 1000, gid: 1000}, file.content)
  }
  archive.finalize()
  await sandbox.backend.extractArchive(sandbox.runtime, Readable.from([await tar]), SANDBOX_HOME)
}

async function readJson(path: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as unknown
  } catch {
    return undefined
  }
}
