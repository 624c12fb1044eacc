/**
 * The compiled repository policy. Field names are those of the Go cleanroom's
 * compiled policy JSON, so `policy validate --json` reads the same in both.
 */

/** Connections to `host` on one of `ports` may leave the sandbox. */
export interface AllowRule {
  readonly host: string
  readonly ports: readonly number[]
  /** Why the rule exists; documentation only, not part of the hash. */
  readonly reason?: string
}

/** Connections to `host` are refused on `ports`, or on every port when `ports` is absent. */
export interface DenyRule {
  readonly host: string
  readonly ports?: readonly number[]
  readonly reason?: string
}

export interface CompiledPolicy {
  readonly version: 1
  /** The digest-pinned OCI image (`repo@sha256:…`); absent means the host's root filesystem. */
  readonly image_ref?: string
  /** `sha256:<hex>`, the digest part of `image_ref`. */
  readonly image_digest?: string
  readonly network_default: 'deny'
  /** Sorted by host, one rule per host, ports sorted and unique. */
  readonly allow: readonly AllowRule[]
  readonly deny: readonly DenyRule[]
  /** Credential routes the repository asks for (`sandbox.credentials`); the runtime config grants them or not. Sorted; absent when none. */
  readonly credentials?: readonly string[]
  /** SHA-256 hex of the canonical JSON of everything above except reasons. */
  readonly hash: string
}

/** A compiled policy before its hash is computed. */
export type PolicyContent = Omit<CompiledPolicy, 'hash'>

/** An allow rule as a caller supplies it (e.g. an agent's network needs): not yet normalised. */
export interface AllowRuleInput {
  host: string
  ports: readonly number[]
  reason?: string
}

export const POLICY_VERSION = 1
export const POLICY_KEYS = ['version', 'sandbox'] as const
export const SANDBOX_KEYS = ['image', 'network', 'credentials'] as const
export const IMAGE_KEYS = ['ref'] as const
export const NETWORK_KEYS = ['default', 'allow', 'deny'] as const
export const RULE_KEYS = ['host', 'ports', 'reason'] as const
