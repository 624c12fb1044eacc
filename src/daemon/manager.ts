import type {Readable} from 'node:stream'

import {type BackendName, DEFAULT_RUNTIME_CONFIG, type EgressAuditFailureMode} from '../config/schema.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import type {BackendRuntime, SandboxBackend, SandboxProcess} from '../sandbox/backend.js'
import {newExecId} from '../sandbox/ids.js'
import {requireCapabilities} from '../sandbox/capabilities.js'
import type {ExecRequest, SandboxRecord} from '../sandbox/types.js'
import type {Resolver} from '../egress/addresses.js'
import {CredentialGateways} from '../credentials/gateways.js'
import type {GrantRequest, GrantSummary} from '../credentials/wire.js'
import type {ImageService} from '../images/service.js'
import {WorkspaceChangeSet} from '../workspace/changes.js'
import {ExecActivity} from './activity.js'
import {ConnectionBudget} from './connection-limits.js'
import {buildSandbox, type CreateSandboxRequest, findSandboxImage, newRecord} from './create.js'
import {auditPath, caEnv, proxyEnv} from './egress.js'
import {type EgressState, EgressSupervisor} from './egress-supervisor.js'
import type {Logger} from './log.js'
import {SandboxRecords} from './records.js'
import {recoverSandboxes} from './recovery.js'
import type {StateStore} from './state.js'

export type {Logger} from './log.js'
export type {CreateSandboxRequest} from './create.js'

export interface PendingExec {
  exec_id: string
  sandbox_id: string
  request: ExecRequest
  created_at: string
}

export interface ManagerOptions {
  /** Name resolution for the egress proxies; tests map names to local addresses. */
  resolver?: Resolver
  egressAuditFailure?: EgressAuditFailureMode
  /** Connections one sandbox may hold open through its proxy (egress.max_connections_per_sandbox). */
  maxConnectionsPerSandbox?: number
  /** How long an ephemeral sandbox waits for its command before it is removed. */
  ephemeralAttachMs?: number
  /** How often an egress listener that could not be made is tried again. */
  egressRetryMs?: number
  /** More roots the credential gateway trusts upstream; tests add their own TLS servers' CA. */
  upstreamCa?: readonly string[]
  /** The image cache, where sandboxes on an image find its root filesystem. */
  images?: ImageService
}

export const EPHEMERAL_ATTACH_MS = 10_000
const EGRESS_RETRY_MS = 2000

/**
 * The daemon's sandboxes: creates them through a backend, keeps their records
 * on disk, re-adopts them after a restart, watches their inits, and starts
 * executions in them. Creating and removing one sandbox never overlap: a removal
 * waits for the create in flight, and parallel removals share one.
 */
export class SandboxManager {
  private readonly records: SandboxRecords
  private readonly pendingExecs = new Map<string, PendingExec>()
  private readonly creating = new Map<string, Promise<void>>()
  private readonly removing = new Map<string, Promise<SandboxRecord>>()
  private readonly watches = new Map<string, () => void>()
  private readonly egress: EgressSupervisor
  private readonly activity: ExecActivity
  private readonly credentials: CredentialGateways

  constructor(
    readonly store: StateStore,
    private readonly backends: ReadonlyMap<BackendName, SandboxBackend>,
    private readonly log: Logger,
    private readonly options: ManagerOptions = {},
  ) {
    this.records = new SandboxRecords(store, log)
    this.credentials = new CredentialGateways({stateRoot: store.root, ...(options.resolver && {resolver: options.resolver}), ...(options.upstreamCa && {upstreamCa: options.upstreamCa})})
    this.egress = new EgressSupervisor({
      backend: (record) => this.backend(record.backend),
      sandboxDir: (id) => store.sandboxDir(id),
      ...(options.resolver ? {resolver: options.resolver} : {}),
      auditFailure: options.egressAuditFailure ?? 'deny',
      limits: {perSandbox: options.maxConnectionsPerSandbox ?? DEFAULT_RUNTIME_CONFIG.egress.max_connections_per_sandbox, budget: new ConnectionBudget()},
      log,
      retryMs: options.egressRetryMs ?? EGRESS_RETRY_MS,
      // A sandbox granted credentials has its gateway served again whenever its egress is (a restarted daemon, a retried listener).
      opened: (record, egress) => this.credentials.attach({record, sandboxDir: store.sandboxDir(record.sandbox_id), egress, backend: this.backend(record.backend), runtime: record.runtime ?? {}}),
      stopped: (id) => this.credentials.detach(id),
    })
    this.activity = new ExecActivity((id, why) => {
      log(`sandbox ${id}: removing it (it was for one command): ${why}`)
      this.remove(id).catch((error: unknown) => log(`sandbox ${id}: could not remove it: ${messageOf(error)}`))
    })
  }

  /** Takes over what the state dir holds (see recovery.ts); writes no status it did not see. */
  async adopt(): Promise<void> {
    await recoverSandboxes({
      store: this.store,
      backends: this.backends,
      log: this.log,
      list: (record) => this.records.add(record),
      markFailed: (record, why) => this.markFailed(record, why),
      remove: (id) => this.remove(id).then(() => undefined),
      serve: async (record) => {
        await this.egress.startOrRetry(record)
        this.watch(record)
        this.watchLimits(record)
      },
    })
    for (const backend of this.backends.values()) await backend.reclaimLeftovers?.().catch((error: unknown) => this.log(`${backend.name}: ${messageOf(error)}`))
  }

  async create(request: CreateSandboxRequest): Promise<SandboxRecord> {
    const backend = this.backend(request.backend)
    requireCapabilities(backend.name, request.policy, backend.capabilities())
    const image = await findSandboxImage(this.options.images, request.policy)
    const record = newRecord(request, backend.name, image)
    const context = {store: this.store, records: this.records, egress: this.egress, log: this.log, removalRequested: (id: string) => this.removing.has(id)}
    const built = buildSandbox(context, backend, record, request, image)
    this.creating.set(record.sandbox_id, built.then(() => undefined, () => undefined))
    try {
      await built
    } finally {
      this.creating.delete(record.sandbox_id)
    }
    this.watch(record)
    this.watchLimits(record)
    if (record.ephemeral) this.activity.awaitOwner(record.sandbox_id, this.options.ephemeralAttachMs ?? EPHEMERAL_ATTACH_MS)
    return record
  }

  list(all: boolean): SandboxRecord[] {
    return this.records.list(all)
  }

  get(id: string): SandboxRecord {
    return this.records.get(id)
  }

  /** The sandbox's egress listener and audit log, for `sandbox inspect`. */
  egressState(id: string): EgressState {
    return this.egress.state(this.get(id).sandbox_id)
  }

  /** Executions running in the sandbox, and whether any is waiting to be attached. */
  executions(id: string): {running: number; pending: number} {
    const pending = [...this.pendingExecs.values()].filter((exec) => exec.sandbox_id === id).length
    return {running: this.activity.running(id), pending}
  }

  /**
   * Terminates a sandbox: its processes are killed, its mounts and files removed;
   * the record stays in memory as stopped (for `sandbox ls --all`), nothing on disk.
   * One still being created is removed once its create has stopped. Removals of one
   * sandbox at once are one removal. A full disk does not stop it.
   */
  async remove(id: string): Promise<SandboxRecord> {
    const inFlight = this.removing.get(id)
    if (inFlight) return inFlight
    const record = this.get(id)
    if (record.status === 'stopped') return record
    const removal = this.tearDown(record).finally(() => this.removing.delete(id))
    this.removing.set(id, removal)
    return removal
  }

  private async tearDown(record: SandboxRecord): Promise<SandboxRecord> {
    const id = record.sandbox_id
    await this.creating.get(id)
    if (!this.records.isCurrent(record)) return {...record, status: 'stopped'}
    this.unwatch(id)
    this.activity.forget(id)
    record.status = 'stopping'
    record.updated_at = new Date().toISOString()
    await this.records.persist(record)
    await this.egress.stop(id)
    await this.backend(record.backend).reclaim(this.store.sandboxDir(id), record.runtime)
    await this.records.written(id)
    await this.store.remove(id)
    record.status = 'stopped'
    record.updated_at = new Date().toISOString()
    delete record.runtime
    for (const [execId, pending] of this.pendingExecs) if (pending.sandbox_id === id) this.pendingExecs.delete(execId)
    this.records.trimStopped()
    this.log(`sandbox ${id}: removed`)
    return record
  }

  /** Terminates every live sandbox (serve --shutdown-sandboxes). */
  async removeAll(): Promise<void> {
    await Promise.all(
      this.list(false).map((record) => this.remove(record.sandbox_id).catch((error: unknown) => this.log(`sandbox ${record.sandbox_id}: ${messageOf(error)}`))),
    )
  }

  /** Forgets stopped sandboxes (system prune); they have nothing on disk. */
  forgetStopped(ids: readonly string[]): void {
    this.records.forgetStopped(ids)
  }

  /** Registers an execution; it starts when a client attaches to it. */
  createExec(sandboxId: string, request: ExecRequest): PendingExec {
    const record = this.get(sandboxId)
    requireReady(record)
    const pending: PendingExec = {exec_id: newExecId(), sandbox_id: sandboxId, request, created_at: new Date().toISOString()}
    this.pendingExecs.set(pending.exec_id, pending)
    return pending
  }

  /** Starts a registered execution; each can be started once. */
  async startExec(execId: string): Promise<{sandboxId: string; process: SandboxProcess}> {
    const pending = this.pendingExecs.get(execId)
    if (!pending) throw new CleanroomError('exec_not_found', `no execution ${execId} waiting to start (each can be attached once)`)
    this.pendingExecs.delete(execId)
    return {sandboxId: pending.sandbox_id, process: await this.run(pending.sandbox_id, pending.request)}
  }

  /**
   * Starts a process in a ready sandbox; a sandbox found dead is marked failed.
   * The first execution of an ephemeral sandbox owns it (see ExecActivity).
   */
  async run(sandboxId: string, request: ExecRequest): Promise<SandboxProcess> {
    // The request's own variables win over the proxy defaults; egress services' (the gateway's trust bundle) replace the host's CA settings, which an image has no files for.
    const hostCa = this.get(sandboxId).image_ref === undefined ? caEnv() : {}
    const env = {...proxyEnv(), ...hostCa, ...this.egress.env(sandboxId), ...request.env}
    const process = await this.inReadySandbox(sandboxId, (backend, runtime) => backend.exec(runtime, {...request, env}))
    const record = this.get(sandboxId)
    record.last_used_at = new Date().toISOString()
    this.activity.started(sandboxId, process, record.ephemeral === true)
    void process.exited.catch(() => undefined).then(() => this.finished(record, process))
    return process
  }

  /** The client of an execution went away before it exited: kept sandboxes keep it running, an ephemeral one it owns goes. */
  clientGone(sandboxId: string, process: SandboxProcess): void {
    this.activity.clientGone(sandboxId, process)
  }

  private finished(record: SandboxRecord, process: SandboxProcess): void {
    record.last_used_at = new Date().toISOString()
    this.activity.finished(record.sandbox_id, process)
    if (record.status === 'ready' && !this.removing.has(record.sandbox_id) && this.records.isCurrent(record)) void this.records.persist(record)
  }

  async extractArchive(sandboxId: string, archive: Readable, destination: string): Promise<void> {
    await this.inReadySandbox(sandboxId, (backend, runtime) => backend.extractArchive(runtime, archive, destination))
  }

  async readArchive(sandboxId: string, path: string): Promise<Readable> {
    return this.inReadySandbox(sandboxId, (backend, runtime) => backend.readArchive(runtime, path))
  }

  /** Calls the backend for a ready sandbox; when the call fails because the sandbox died, it is marked failed. */
  private async inReadySandbox<T>(sandboxId: string, call: (backend: SandboxBackend, runtime: BackendRuntime) => Promise<T>): Promise<T> {
    const record = this.get(sandboxId)
    requireReady(record)
    const {backend, runtime} = this.reach(record)
    try {
      return await call(backend, runtime)
    } catch (error) {
      await this.failIfDead(record)
      throw error
    }
  }

  /** What the sandbox changed under /workspace, relative to its host directory (docs/api.md#workspace); the caller closes it. */
  async workspaceDiff(sandboxId: string): Promise<WorkspaceChangeSet> {
    const record = this.get(sandboxId)
    if (record.workspace_source === null) {
      throw new CleanroomError('workspace_unavailable', `sandbox ${sandboxId} has no workspace: it was created without one`)
    }
    if (record.status === 'stopped' || record.status === 'provisioning') {
      throw new CleanroomError('sandbox_not_ready', `sandbox ${sandboxId} is ${record.status}: its workspace changes are ${record.status === 'stopped' ? 'gone' : 'not there yet'}`)
    }
    const {backend, runtime} = this.reach(record)
    const {upper, hidden, provided, base} = await backend.workspaceLayers(runtime)
    return WorkspaceChangeSet.read({upper, lower: record.workspace_source, hidden, provided, createdAt: Date.parse(record.created_at), ...(base ? {base} : {})})
  }

  /**
   * Grants a sandbox credentials through its gateway (POST …/credentials): the
   * routes and logins it may use, served from now on and after a daemon restart.
   */
  async grantCredentials(sandboxId: string, request: GrantRequest): Promise<GrantSummary> {
    const record = this.get(sandboxId)
    requireReady(record)
    const {backend, runtime} = this.reach(record)
    const egress = this.egress.get(sandboxId)
    if (egress === undefined) {
      throw new CleanroomError('sandbox_not_ready', `sandbox ${sandboxId} has no egress listener now (${this.egress.state(sandboxId).listen_error ?? 'not started'}): try again in a moment`)
    }
    return this.credentials.grant({record, sandboxDir: this.store.sandboxDir(sandboxId), egress, backend, runtime}, request)
  }

  /** Where the sandbox's egress audit log is. */
  auditLog(sandboxId: string): string {
    return auditPath(this.store.sandboxDir(this.get(sandboxId).sandbox_id))
  }

  /** Daemon shutdown: stops watching and serving egress (connections out are refused until a daemon adopts the sandboxes again). */
  async close(): Promise<void> {
    for (const id of [...this.watches.keys()]) this.unwatch(id)
    this.activity.forgetAll()
    await this.egress.stopAll()
    for (const backend of this.backends.values()) {
      try {
        await backend.release?.()
      } catch (error) {
        this.log(`${backend.name}: ${messageOf(error)}`)
      }
    }
    await this.records.allWritten()
  }

  backendOf(record: SandboxRecord): SandboxBackend {
    return this.backend(record.backend)
  }

  private watch(record: SandboxRecord): void {
    if (!record.runtime) return
    const id = record.sandbox_id
    this.unwatch(id)
    const stop = this.backend(record.backend).watchExit(record.runtime, (why) => {
      this.watches.delete(id)
      if (this.records.isCurrent(record) && record.status === 'ready' && !this.removing.has(id)) void this.markFailed(record, why)
    })
    this.watches.set(id, stop)
  }

  private unwatch(id: string): void {
    this.watches.get(id)?.()
    this.watches.delete(id)
  }

  /** A sandbox that passes a limit its backend watches (linux-ns: disk) is stopped by the backend and marked failed here. */
  private watchLimits(record: SandboxRecord): void {
    if (!record.runtime) return
    const onBreach = (reason: string): void => {
      if (this.records.isCurrent(record) && record.status === 'ready' && !this.removing.has(record.sandbox_id)) void this.markFailed(record, reason)
    }
    this.backends.get(record.backend)?.watchLimits?.(record.runtime, onBreach, this.log)
  }

  private reach(record: SandboxRecord): {backend: SandboxBackend; runtime: BackendRuntime} {
    const backend = this.backend(record.backend)
    if (!record.runtime) throw new CleanroomError('sandbox_failed', `sandbox ${record.sandbox_id} has no runtime state`)
    return {backend, runtime: record.runtime}
  }

  private async failIfDead(record: SandboxRecord): Promise<void> {
    const backend = this.backends.get(record.backend)
    if (backend && record.runtime && !(await backend.isAlive(record.runtime))) {
      if (record.status === 'ready') await this.markFailed(record, 'its init process exited')
      throw new CleanroomError('sandbox_failed', `sandbox ${record.sandbox_id} has failed: ${record.failure ?? 'its init process exited'}`, {
        suggestions: [`Remove it with: cleanroom sandbox rm ${record.sandbox_id}`],
      })
    }
  }

  private backend(name: BackendName): SandboxBackend {
    const backend = this.backends.get(name)
    if (!backend) {
      throw new CleanroomError('backend_unavailable', `backend ${name} is not available in this daemon`, {
        suggestions: ['Use --backend linux-ns, or check the backends with: cleanroom doctor'],
      })
    }
    return backend
  }

  /** Records a death the daemon saw: failed with why, its egress closed. The record on disk follows when the disk allows. */
  private async markFailed(record: SandboxRecord, why: string): Promise<void> {
    record.status = 'failed'
    record.failure = why
    record.updated_at = new Date().toISOString()
    this.unwatch(record.sandbox_id)
    this.log(`sandbox ${record.sandbox_id}: failed: ${why}`)
    await Promise.all([this.egress.stop(record.sandbox_id), this.records.persist(record)])
  }

}

function requireReady(record: SandboxRecord): void {
  if (record.status === 'ready') return
  const why = record.status === 'failed' && record.failure ? `: ${record.failure}` : ''
  throw new CleanroomError(record.status === 'failed' ? 'sandbox_failed' : 'sandbox_not_ready', `sandbox ${record.sandbox_id} is ${record.status}${why}`, {
    suggestions: record.status === 'failed' ? [`Remove it with: cleanroom sandbox rm ${record.sandbox_id}`] : [],
  })
}
