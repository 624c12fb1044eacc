import type {BackendName} from '../config/schema.js'
import {CleanroomError, isCleanroomError, messageOf} from '../errors/index.js'
import {AGENT_PACKAGE_MOUNT} from '../agents/cache/layout.js'
import type {ImageService} from '../images/service.js'
import {sandboxPolicyHash} from '../policy/allow-all.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {ProvisionImage, SandboxBackend} from '../sandbox/backend.js'
import {newSandboxId} from '../sandbox/ids.js'
import {requestedResources} from '../sandbox/resources.js'
import type {SandboxRecord} from '../sandbox/types.js'
import type {AgentPackageMount} from './agent-packages.js'
import {PROXY_PORT} from './egress.js'
import type {EgressSupervisor} from './egress-supervisor.js'
import type {Logger} from './log.js'
import type {SandboxRecords} from './records.js'
import type {StateStore} from './state.js'

export interface CreateSandboxRequest {
  backend: BackendName
  policy: CompiledPolicy
  /** The policy file the policy came from; null for the default or a policy a client compiled. */
  policySource: string | null
  workspaceSource: string | null
  allowAll: boolean
  /** For one command: removed when its execution ends or its client leaves (docs/api.md). */
  ephemeral?: boolean
  /** The shared agent cache's entry to mount read-only (src/daemon/agent-packages.ts). */
  agentPackage?: AgentPackageMount
}

export interface BuildContext {
  store: StateStore
  records: SandboxRecords
  egress: EgressSupervisor
  log: Logger
  /** A removal of the sandbox was asked for meanwhile: the create stops, and leaves the cleaning to it. */
  removalRequested(id: string): boolean
}

/**
 * The cached image the policy names, or image_not_pulled (with the reference in its
 * details: the CLI pulls it, with the user's registry credentials, and asks again).
 */
export async function findSandboxImage(images: ImageService | undefined, policy: CompiledPolicy): Promise<ProvisionImage | undefined> {
  const ref = policy.image_ref
  if (ref === undefined || policy.image_digest === undefined) return undefined
  const image = images === undefined ? undefined : await images.store.find(policy.image_digest)
  if (image === undefined) {
    throw new CleanroomError('image_not_pulled', `image ${ref} is not in the image cache`, {
      details: {ref},
      suggestions: [`Pull it with: cleanroom image pull ${ref}`],
    })
  }
  return {ref, id: image.id, rootfs: image.rootfs, config: image.config}
}

/** The record of a sandbox about to be created; one on an image names it from the start, so the image is never removed under it. */
export function newRecord(request: CreateSandboxRequest, backend: BackendName, image?: ProvisionImage): SandboxRecord {
  const now = new Date().toISOString()
  return {
    sandbox_id: newSandboxId(),
    status: 'provisioning',
    backend,
    policy_hash: sandboxPolicyHash(request.policy, request.allowAll),
    policy: request.policy,
    policy_source: request.policySource,
    allow_all: request.allowAll,
    workspace_source: request.workspaceSource,
    ...(image ? {image_ref: image.ref, image_digest: request.policy.image_digest, image_id: image.id} : {}),
    ...(request.agentPackage ? {agent_package: {entry: request.agentPackage.entry, package: request.agentPackage.package, version: request.agentPackage.version}} : {}),
    created_at: now,
    updated_at: now,
    ...(request.ephemeral ? {ephemeral: true} : {}),
  }
}

/**
 * Creates `record`'s sandbox: its dir and first record, the backend's sandbox, its
 * egress listener (with the agent package `request` names mounted read-only), then
 * `ready` on disk and in memory. Whatever fails, nothing of it is left; a removal
 * asked for meanwhile does the cleaning itself. Logs how long each part took.
 */
export async function buildSandbox(context: BuildContext, backend: SandboxBackend, record: SandboxRecord, request: CreateSandboxRequest, image?: ProvisionImage): Promise<void> {
  const {store, records, egress, log} = context
  const id = record.sandbox_id
  const refuseIfRemoved = () => {
    if (context.removalRequested(id)) throw removedWhileCreating(id)
  }
  const times = [performance.now()]
  try {
    await store.create(record)
  } catch (error) {
    await store.remove(id).catch(() => undefined)
    throw createFailed(`its state could not be written: ${messageOf(error)}`, error)
  }
  records.add(record)
  times.push(performance.now())
  try {
    record.runtime = await backend.provision({
      sandboxId: id,
      policy: record.policy,
      workspaceSource: record.workspace_source,
      stateDir: store.sandboxDir(id),
      resources: requestedResources(record.policy),
      listenPorts: [PROXY_PORT],
      log,
      ...(request.agentPackage ? {readOnlyMounts: [{source: request.agentPackage.source, target: AGENT_PACKAGE_MOUNT}]} : {}),
      ...(image ? {image} : {}),
    })
    record.resources = backend.resourcesOf?.(record.runtime)
    times.push(performance.now())
    refuseIfRemoved()
    await egress.start(record)
    times.push(performance.now())
    refuseIfRemoved()
    const updated = new Date().toISOString()
    await store.save({...record, status: 'ready', updated_at: updated})
    record.status = 'ready'
    record.updated_at = updated
  } catch (error) {
    if (context.removalRequested(id)) throw removedWhileCreating(id)
    await egress.stop(id)
    await backend.reclaim(store.sandboxDir(id), record.runtime).catch((error_: unknown) => log(`sandbox ${id}: cleaning up a failed create: ${messageOf(error_)}`))
    records.delete(id)
    await store.remove(id).catch((error_: unknown) => log(`sandbox ${id}: removing the dir of a failed create: ${messageOf(error_)}`))
    throw isCleanroomError(error) ? error : createFailed(messageOf(error), error)
  }
  times.push(performance.now())
  const [start = 0, saved = 0, provisioned = 0, listening = 0, done = 0] = times
  const ms = (value: number) => value.toFixed(1)
  log(
    `sandbox ${id}: ready (${backend.name}, policy ${record.policy_hash.slice(0, 12)}${record.ephemeral ? ', for one command' : ''}) in ${ms(done - start)} ms: ` +
      `backend ${ms(provisioned - saved)}, egress listener ${ms(listening - provisioned)}, state writes ${ms(saved - start + done - listening)}`,
  )
}

function createFailed(why: string, cause: unknown): CleanroomError {
  return new CleanroomError('backend_failed', `could not create the sandbox: ${why}`, {cause})
}

function removedWhileCreating(id: string): CleanroomError {
  return new CleanroomError('sandbox_not_found', `sandbox ${id} was removed while it was being created`)
}
