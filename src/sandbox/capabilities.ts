import {CleanroomError} from '../errors/index.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {Capabilities, CapabilityName} from './types.js'

/** What to change in cleanroom.yaml when a backend lacks a capability the policy needs. */
const FIXES: Partial<Record<CapabilityName, string>> = {
  'network.allowlist_egress': 'Remove sandbox.network.allow from cleanroom.yaml to run with no network',
  'images.oci': "Remove sandbox.image from cleanroom.yaml to run on the host's root filesystem (read-only)",
  'resources.cpu': 'Remove sandbox.resources.vcpus from cleanroom.yaml: this backend cannot promise a CPU count yet',
  'resources.memory': 'Remove sandbox.resources.memory from cleanroom.yaml: this backend cannot promise memory yet',
  'resources.disk': 'Remove sandbox.resources.disk from cleanroom.yaml: this backend cannot promise disk space yet',
  'services.docker': 'Remove sandbox.docker (or sandbox.services.docker) from cleanroom.yaml: this backend runs no Docker daemon',
  'policy.stages': 'Run dependency and service commands in the sandbox yourself (cleanroom exec), and put their hosts in sandbox.network.allow',
  'policy.run_before': 'Remove sandbox.run.before from cleanroom.yaml and run the command as part of yours',
  'repository.checkout': 'Remove the repository block from cleanroom.yaml: sandboxes see the repository as it is on disk at /workspace',
  'expose.https': 'Remove expose.https from cleanroom.yaml: this backend serves no routes into sandboxes',
}

/** A capability `policy` needs, and the policy keys that need it. */
export interface NeededCapability {
  capability: CapabilityName
  keys: string[]
}

/** Every capability `policy` needs and why, in a fixed order. */
export function neededCapabilities(policy: CompiledPolicy): NeededCapability[] {
  const needs: NeededCapability[] = [{capability: 'network.default_deny', keys: ['sandbox.network.default']}]
  const need = (capability: CapabilityName, ...keys: (string | false | undefined)[]) => {
    const named = keys.filter((key): key is string => typeof key === 'string')
    if (named.length > 0) needs.push({capability, keys: named})
  }
  need('network.allowlist_egress', policy.allow.length > 0 && 'sandbox.network.allow')
  need('images.oci', policy.image_ref !== undefined && 'sandbox.image.ref')
  need('resources.cpu', policy.resources?.vcpus !== undefined && 'sandbox.resources.vcpus')
  need('resources.memory', policy.resources?.memory_bytes !== undefined && 'sandbox.resources.memory')
  need('resources.disk', policy.resources?.disk_bytes !== undefined && 'sandbox.resources.disk')
  need('services.docker', policy.services?.docker?.required === true && 'sandbox.docker.required')
  const stages = policy.network_stages ?? {}
  need(
    'policy.stages',
    policy.dependencies !== undefined && 'sandbox.dependencies',
    policy.services?.blocks !== undefined && 'sandbox.services',
    stages.workspace !== undefined && 'repository.network',
    stages.dependencies !== undefined && 'sandbox.network.dependencies',
    stages.services !== undefined && 'sandbox.network.services',
    stages.execution !== undefined && 'sandbox.network.execution',
  )
  need('policy.run_before', policy.run !== undefined && 'sandbox.run.before')
  need('repository.checkout', policy.repository !== undefined && 'repository')
  need('expose.https', policy.expose !== undefined && 'expose.https')
  return needs
}

/** The capabilities `policy` needs that `capabilities` lacks. */
export function missingCapabilities(policy: CompiledPolicy, capabilities: Capabilities): CapabilityName[] {
  return neededCapabilities(policy)
    .map((need) => need.capability)
    .filter((name) => !capabilities[name])
}

/**
 * Fails closed: a policy that needs what the backend cannot enforce is
 * refused, never downgraded. The message names each missing capability and
 * the policy keys that need it.
 */
export function requireCapabilities(backend: string, policy: CompiledPolicy, capabilities: Capabilities): void {
  const missing = neededCapabilities(policy).filter((need) => !capabilities[need.capability])
  if (missing.length === 0) return
  const names = missing.map((need) => need.capability)
  throw new CleanroomError('backend_capability_mismatch', capabilityMismatch(backend, names, missing), {
    details: {backend, missing: names, keys: Object.fromEntries(missing.map((need) => [need.capability, need.keys]))},
    suggestions: capabilityFixes(names),
  })
}

/** `backend linux-ns cannot enforce this policy: it lacks resources.memory (sandbox.resources.memory), …`. */
export function capabilityMismatch(backend: string, missing: readonly CapabilityName[], needs: readonly NeededCapability[] = []): string {
  const named = missing.map((name) => {
    const keys = needs.find((need) => need.capability === name)?.keys
    return keys === undefined ? name : `${name} (${keys.join(', ')})`
  })
  return `backend ${backend} cannot enforce this policy: it lacks ${named.join(', ')}`
}

export function capabilityFixes(missing: readonly CapabilityName[]): string[] {
  return missing.flatMap((name) => FIXES[name] ?? [])
}
