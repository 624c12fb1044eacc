import {CleanroomError} from '../errors/index.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {Capabilities, CapabilityName} from './types.js'

/** What to change in cleanroom.yaml when a backend lacks a capability the policy needs. */
const FIXES: Partial<Record<CapabilityName, string>> = {
  'network.allowlist_egress': 'Remove sandbox.network.allow from cleanroom.yaml to run with no network',
  'images.oci': "Remove sandbox.image from cleanroom.yaml to run on the host's root filesystem (read-only)",
}

/** The capabilities `policy` needs that `capabilities` lacks. */
export function missingCapabilities(policy: CompiledPolicy, capabilities: Capabilities): CapabilityName[] {
  const needed: CapabilityName[] = ['network.default_deny']
  if (policy.allow.length > 0) needed.push('network.allowlist_egress')
  if (policy.image_ref !== undefined) needed.push('images.oci')
  return needed.filter((name) => !capabilities[name])
}

/** Fails closed: a policy that needs what the backend cannot enforce is refused, never downgraded. */
export function requireCapabilities(backend: string, policy: CompiledPolicy, capabilities: Capabilities): void {
  const missing = missingCapabilities(policy, capabilities)
  if (missing.length === 0) return
  throw new CleanroomError('backend_capability_mismatch', capabilityMismatch(backend, missing), {
    details: {backend, missing},
    suggestions: capabilityFixes(missing),
  })
}

export function capabilityMismatch(backend: string, missing: readonly CapabilityName[]): string {
  return `backend ${backend} cannot enforce this policy: it lacks ${missing.join(', ')}`
}

export function capabilityFixes(missing: readonly CapabilityName[]): string[] {
  return missing.flatMap((name) => FIXES[name] ?? [])
}
