import type {Limit, Maximum, ResourceSettings} from '../config/resources.js'
import {CleanroomError} from '../errors/index.js'
import type {CompiledPolicy} from '../policy/schema.js'
import {formatByteSize} from '../util/byte-size.js'
import type {CapabilityName} from './types.js'

/** What a repository policy's `sandbox.resources` asks for, in the compiled policy's (the Go tool's) field names. */
export interface ResourceRequest {
  vcpus?: number
  memory_bytes?: number
  disk_bytes?: number
}

/** The limits of one sandbox; null: none of that kind. */
export interface SandboxLimits {
  pids: number | null
  memory_bytes: number | null
  cpu_weight: number
  vcpus: number | null
  disk_bytes: number | null
}

/** The limits in force, as a sandbox's record (and `sandbox inspect`) shows them. */
export type SandboxResources = SandboxLimits & {
  /** How they are enforced: the cgroup version. */
  cgroup: 'v1' | 'v2'
}

/** What this machine has, for a maximum of `machine`. */
export interface MachineSize {
  memory_bytes: number
  cpus: number
  /** Size of the filesystem that holds the sandboxes' state. */
  disk_bytes: number
}

/** The capability each key of `sandbox.resources` needs. */
export const RESOURCE_CAPABILITIES: Record<keyof ResourceRequest, CapabilityName> = {
  vcpus: 'resources.cpu',
  memory_bytes: 'resources.memory',
  disk_bytes: 'resources.disk',
}

const POLICY_KEYS: Record<keyof ResourceRequest, {policy: string; config: 'vcpus' | 'memory' | 'disk'}> = {
  vcpus: {policy: 'vcpus', config: 'vcpus'},
  memory_bytes: {policy: 'memory', config: 'memory'},
  disk_bytes: {policy: 'disk', config: 'disk'},
}

/** The policy's `sandbox.resources`, when it has any: read structurally, as policies compiled before it existed have none. */
export function requestedResources(policy: CompiledPolicy): ResourceRequest | undefined {
  const {resources} = policy as {resources?: unknown}
  if (typeof resources !== 'object' || resources === null) return undefined
  const request: ResourceRequest = {}
  for (const key of Object.keys(POLICY_KEYS) as (keyof ResourceRequest)[]) {
    const value = (resources as Record<string, unknown>)[key]
    if (typeof value === 'number' && Number.isFinite(value) && value > 0) request[key] = value
  }
  return Object.keys(request).length === 0 ? undefined : request
}

/**
 * A sandbox's limits: the runtime config's, each raised to what the policy asks for
 * (the Go tool's floors: a policy says what its work needs at least). A request
 * above the configured maximum is refused, never cut down: the work would fail later
 * in a way that is harder to understand.
 */
export function planLimits(settings: ResourceSettings, request: ResourceRequest | undefined, machine: MachineSize, backend = 'linux-ns'): SandboxLimits {
  const maxima = {vcpus: machine.cpus, memory_bytes: machine.memory_bytes, disk_bytes: machine.disk_bytes}
  const limits = defaultLimits(settings)
  for (const key of Object.keys(POLICY_KEYS) as (keyof ResourceRequest)[]) {
    const asked = request?.[key]
    if (asked === undefined) continue
    const names = POLICY_KEYS[key]
    const most = maximumValue(settings.max[names.config], maxima[key])
    if (asked > most) throw overMaximum(backend, names, asked, most, settings.max[names.config] === 'machine')
    const current = limits[key]
    if (current !== null && asked > current) limits[key] = asked
  }
  return limits
}

/** The limits a sandbox gets when its policy asks for nothing. */
export function defaultLimits(settings: ResourceSettings): SandboxLimits {
  return {
    pids: limitValue(settings.pids),
    memory_bytes: limitValue(settings.memory),
    cpu_weight: settings.cpu_weight,
    vcpus: limitValue(settings.vcpus),
    disk_bytes: limitValue(settings.disk),
  }
}

function limitValue(limit: Limit): number | null {
  return limit === 'unlimited' ? null : limit
}

function maximumValue(maximum: Maximum, machine: number): number {
  return maximum === 'machine' ? machine : maximum
}

function overMaximum(backend: string, names: {policy: string; config: string}, asked: number, most: number, isMachine: boolean): CleanroomError {
  const show = (value: number) => (names.policy === 'vcpus' ? String(value) : formatByteSize(value))
  const setting = `backends.${backend}.resources.max.${names.config}`
  const where = isMachine ? `this machine's ${names.policy === 'disk' ? 'state filesystem size' : names.policy === 'vcpus' ? 'CPU count' : 'memory'} (${setting} is machine)` : setting
  return new CleanroomError('resources_over_maximum', `the policy asks for sandbox.resources.${names.policy} ${show(asked)}, more than a sandbox may have here: ${show(most)}, ${where}`, {
    details: {key: `sandbox.resources.${names.policy}`, asked, maximum: most},
    suggestions: [`Ask for ${show(most)} or less in cleanroom.yaml`, `Or raise ${setting} in the runtime config (cleanroom config path)`],
  })
}

/** `pids 4096, memory 8 GiB (no swap), cpu weight 100, vcpus unlimited, disk 20 GiB (cgroup v1)`. */
export function describeResources(resources: SandboxResources): string {
  const size = (bytes: number | null) => (bytes === null ? 'unlimited' : formatByteSize(bytes))
  return [
    `pids ${resources.pids ?? 'unlimited'}`,
    `memory ${size(resources.memory_bytes)}`,
    `cpu weight ${resources.cpu_weight}`,
    `vcpus ${resources.vcpus ?? 'unlimited'}`,
    `disk ${size(resources.disk_bytes)}`,
  ].join(', ') + ` (cgroup ${resources.cgroup})`
}
