import type {Readable} from 'node:stream'

import {type BackendName, DEFAULT_RUNTIME_CONFIG} from '../config/schema.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import {sandboxPolicyHash} from '../policy/allow-all.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {BackendRuntime, SandboxBackend, SandboxProcess} from '../sandbox/backend.js'
import {newExecId, newSandboxId} from '../sandbox/ids.js'
import {requireCapabilities} from '../sandbox/capabilities.js'
import type {ExecRequest, SandboxRecord, SandboxStatus} from '../sandbox/types.js'
import type {Resolver} from '../egress/addresses.js'
import {WorkspaceChangeSet} from '../workspace/changes.js'
import {AGENT_PACKAGE_MOUNT} from '../agents/cache/layout.js'
import type {AgentPackageMount} from './agent-packages.js'
import {ConnectionBudget} from './connection-limits.js'
import {auditPath, caEnv, type EgressLimits, proxyEnv, SandboxEgress} from './egress.js'
import type {StateStore} from './state.js'

export interface CreateSandboxRequest {
  backend: BackendName
  policy: CompiledPolicy
  /** The policy file the policy came from; null for the default or a policy a client compiled. */
  policySource: string | null
  workspaceSource: string | null
  allowAll: boolean
  /** The shared agent cache's entry to mount read-only (src/daemon/agent-packages.ts). */
  agentPackage?: AgentPackageMount
}

export interface PendingExec {
  exec_id: string
  sandbox_id: string
  request: ExecRequest
  created_at: string
}

export type Logger = (message: string) => void

/**
 * The daemon's sandboxes: creates them through a backend, keeps their records
 * on disk, re-adopts them after a restart, and starts executions in them.
 */
export class SandboxManager {
  private readonly sandboxes = new Map<string, SandboxRecord>()
  private readonly pendingExecs = new Map<string, PendingExec>()
  private readonly egress = new Map<string, SandboxEgress>()
  /** Every sandbox's proxy connections count against its own limit and the daemon's shared budget. */
  private readonly egressLimits: EgressLimits

  constructor(
    private readonly store: StateStore,
    private readonly backends: ReadonlyMap<BackendName, SandboxBackend>,
    private readonly log: Logger,
    private readonly options: {resolver?: Resolver; maxConnectionsPerSandbox?: number} = {},
  ) {
    this.egressLimits = {perSandbox: options.maxConnectionsPerSandbox ?? DEFAULT_RUNTIME_CONFIG.egress.max_connections_per_sandbox, budget: new ConnectionBudget()}
  }

  /** Loads every record and checks each live one: still running → ready, gone → failed. */
  async adopt(): Promise<void> {
    await this.store.init()
    const records = await this.store.loadAll((id, error) => this.log(`sandbox ${id}: unreadable state, skipped: ${messageOf(error)}`))
    for (const record of records) {
      this.sandboxes.set(record.sandbox_id, record)
      if (record.status !== 'ready' && record.status !== 'provisioning' && record.status !== 'stopping') continue
      const backend = this.backends.get(record.backend)
      const alive = backend !== undefined && record.runtime !== undefined && (await backend.isAlive(record.runtime))
      if (alive && record.status === 'ready') {
        try {
          await this.startEgress(record)
          this.log(`sandbox ${record.sandbox_id}: re-adopted`)
        } catch (error) {
          await this.markFailed(record, `its egress proxy could not listen again: ${messageOf(error)}`)
        }
      } else {
        await this.markFailed(record, alive ? `interrupted while ${record.status}` : 'its init process is gone (the sandbox died while the daemon was down)')
      }
    }
  }

  async create(request: CreateSandboxRequest): Promise<SandboxRecord> {
    const backend = this.backend(request.backend)
    requireCapabilities(backend.name, request.policy, backend.capabilities())
    const now = new Date().toISOString()
    const record: SandboxRecord = {
      sandbox_id: newSandboxId(),
      status: 'provisioning',
      backend: backend.name,
      policy_hash: sandboxPolicyHash(request.policy, request.allowAll),
      policy: request.policy,
      policy_source: request.policySource,
      allow_all: request.allowAll,
      workspace_source: request.workspaceSource,
      ...(request.agentPackage ? {agent_package: {entry: request.agentPackage.entry, package: request.agentPackage.package, version: request.agentPackage.version}} : {}),
      created_at: now,
      updated_at: now,
    }
    const times = [performance.now()]
    this.sandboxes.set(record.sandbox_id, record)
    await this.store.save(record)
    times.push(performance.now())
    try {
      record.runtime = await backend.provision({
        sandboxId: record.sandbox_id,
        policy: request.policy,
        workspaceSource: request.workspaceSource,
        stateDir: this.store.sandboxDir(record.sandbox_id),
        ...(request.agentPackage ? {readOnlyMounts: [{source: request.agentPackage.source, target: AGENT_PACKAGE_MOUNT}]} : {}),
      })
      times.push(performance.now())
      await this.startEgress(record)
      times.push(performance.now())
    } catch (error) {
      // A sandbox that never came up leaves nothing behind.
      if (record.runtime) await backend.terminate(record.runtime).catch(() => undefined)
      this.sandboxes.delete(record.sandbox_id)
      await this.store.remove(record.sandbox_id)
      if (error instanceof CleanroomError) throw error
      throw new CleanroomError('backend_failed', `could not create the sandbox: ${messageOf(error)}`, {cause: error})
    }
    await this.setStatus(record, 'ready')
    times.push(performance.now())
    const [start = 0, saved = 0, provisioned = 0, listening = 0, done = 0] = times
    const ms = (value: number) => value.toFixed(1)
    this.log(
      `sandbox ${record.sandbox_id}: ready (${backend.name}, policy ${record.policy_hash.slice(0, 12)}) in ${ms(done - start)} ms: ` +
        `backend ${ms(provisioned - saved)}, egress listener ${ms(listening - provisioned)}, state writes ${ms(saved - start + done - listening)}`,
    )
    return record
  }

  list(all: boolean): SandboxRecord[] {
    const records = [...this.sandboxes.values()].sort((a, b) => a.sandbox_id.localeCompare(b.sandbox_id))
    return all ? records : records.filter((record) => record.status !== 'stopped')
  }

  get(id: string): SandboxRecord {
    const record = this.sandboxes.get(id)
    if (!record) {
      throw new CleanroomError('sandbox_not_found', `no sandbox ${id}`, {suggestions: ['List sandboxes with: cleanroom sandbox ls --all']})
    }
    return record
  }

  /**
   * Terminates a sandbox: its processes are killed, its mounts and files removed.
   * The record stays in memory as stopped (for `sandbox ls --all`); nothing stays on disk.
   */
  async remove(id: string): Promise<SandboxRecord> {
    const record = this.get(id)
    if (record.status === 'stopped') return record
    await this.setStatus(record, 'stopping')
    await this.egress.get(id)?.close()
    this.egress.delete(id)
    const backend = this.backends.get(record.backend)
    if (backend && record.runtime) await backend.terminate(record.runtime)
    await this.store.remove(id)
    record.status = 'stopped'
    record.updated_at = new Date().toISOString()
    delete record.runtime
    for (const [execId, pending] of this.pendingExecs) if (pending.sandbox_id === id) this.pendingExecs.delete(execId)
    this.log(`sandbox ${id}: removed`)
    return record
  }

  /** Terminates every live sandbox (serve --shutdown-sandboxes). */
  async removeAll(): Promise<void> {
    for (const record of this.list(false)) await this.remove(record.sandbox_id).catch((error: unknown) => this.log(`sandbox ${record.sandbox_id}: ${messageOf(error)}`))
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
  async startExec(execId: string): Promise<SandboxProcess> {
    const pending = this.pendingExecs.get(execId)
    if (!pending) throw new CleanroomError('exec_not_found', `no execution ${execId} waiting to start (each can be attached once)`)
    this.pendingExecs.delete(execId)
    return this.run(pending.sandbox_id, pending.request)
  }

  /** Starts a process in a ready sandbox; a sandbox found dead is marked failed. */
  async run(sandboxId: string, request: ExecRequest): Promise<SandboxProcess> {
    // The request's own variables win; the proxy settings are only defaults.
    const env = {...proxyEnv(), ...caEnv(), ...request.env}
    return this.inReadySandbox(sandboxId, (backend, runtime) => backend.exec(runtime, {...request, env}))
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

  /** Where the sandbox's egress audit log is. */
  auditLog(sandboxId: string): string {
    return auditPath(this.store.sandboxDir(this.get(sandboxId).sandbox_id))
  }

  /** Stops every egress proxy (daemon shutdown): the sandboxes' connections out are refused until a daemon adopts them again. */
  async closeEgress(): Promise<void> {
    for (const egress of this.egress.values()) await egress.close()
    this.egress.clear()
  }

  private async startEgress(record: SandboxRecord): Promise<void> {
    const egress = await SandboxEgress.start(this.backend(record.backend), record, this.store.sandboxDir(record.sandbox_id), this.egressLimits, this.options.resolver)
    this.egress.set(record.sandbox_id, egress)
  }

  private reach(record: SandboxRecord): {backend: SandboxBackend; runtime: BackendRuntime} {
    const backend = this.backend(record.backend)
    if (!record.runtime) throw new CleanroomError('sandbox_failed', `sandbox ${record.sandbox_id} has no runtime state`)
    return {backend, runtime: record.runtime}
  }

  private async failIfDead(record: SandboxRecord): Promise<void> {
    const backend = this.backends.get(record.backend)
    if (backend && record.runtime && !(await backend.isAlive(record.runtime))) {
      await this.markFailed(record, 'its init process exited')
      throw new CleanroomError('sandbox_failed', `sandbox ${record.sandbox_id} has failed: its init process exited`, {
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

  private async markFailed(record: SandboxRecord, why: string): Promise<void> {
    record.failure = why
    await this.setStatus(record, 'failed')
    this.log(`sandbox ${record.sandbox_id}: failed: ${why}`)
  }

  private async setStatus(record: SandboxRecord, status: SandboxStatus): Promise<void> {
    record.status = status
    record.updated_at = new Date().toISOString()
    await this.store.save(record)
  }
}

function requireReady(record: SandboxRecord): void {
  if (record.status === 'ready') return
  const why = record.status === 'failed' && record.failure ? `: ${record.failure}` : ''
  throw new CleanroomError(record.status === 'failed' ? 'sandbox_failed' : 'sandbox_not_ready', `sandbox ${record.sandbox_id} is ${record.status}${why}`, {
    suggestions: record.status === 'failed' ? [`Remove it with: cleanroom sandbox rm ${record.sandbox_id}`] : [],
  })
}
