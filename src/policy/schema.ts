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

/**
 * A command run in a stage (dependencies or services) before the workload,
 * as the Go cleanroom declares it: its outputs are cached by its inputs.
 */
export interface StageBlock {
  readonly name: string
  /** argv; a YAML string becomes `["sh", "-lc", string]`. */
  readonly command: readonly string[]
  /** Repository-relative files (or globs) whose content keys the outputs' cache; sorted. */
  readonly inputs: {readonly files: readonly string[]}
  /** Literal values; a leading `~`, `$HOME` or `${HOME}` is written `${HOME}`, `$WORKSPACE` as the repository path. */
  readonly env?: Readonly<Record<string, string>>
  /** Absolute guest paths, or `${HOME}/…`; sorted. */
  readonly outputs: {readonly dirs?: readonly string[]; readonly files?: readonly string[]}
}

/** The egress of one lifecycle stage: its own allow list, inheriting nothing. */
export interface NetworkStage {
  readonly allow: readonly AllowRule[]
}

/** The stages whose egress a policy scopes: `workspace` is `repository.network`, the rest `sandbox.network.<stage>`. */
export const NETWORK_STAGES = ['workspace', 'dependencies', 'services', 'execution'] as const
export type NetworkStageName = (typeof NETWORK_STAGES)[number]

/** Workload floors (`sandbox.resources`); sizes in bytes. */
export interface Resources {
  readonly vcpus?: number
  readonly memory_bytes?: number
  readonly disk_bytes?: number
}

/** An explicit `repository:` block: how the Go cleanroom checks the repository out into the sandbox. */
export type RepositoryCheckout =
  | {readonly enabled: false}
  | {readonly enabled: true; readonly mode: 'current-repo'; readonly remote: string; readonly path: string; readonly submodules: boolean}

export interface ExposeHttpsRoute {
  readonly port: number
  /** Host templates as written (lower case), e.g. `app.{base}`; unique after expansion. */
  readonly hosts: readonly string[]
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
  // The Go cleanroom's later keys. Each is absent unless the policy declares it, so a policy
  // without them keeps the hash it always had. See sandbox/capabilities.ts for what each needs.
  readonly resources?: Resources
  /** `sandbox.docker` or `sandbox.services.docker` (the same setting), and `sandbox.services` blocks. */
  readonly services?: {readonly docker?: {readonly required: boolean}; readonly blocks?: readonly StageBlock[]}
  readonly dependencies?: {readonly reuse?: 'portable'; readonly blocks: readonly StageBlock[]}
  /** `sandbox.run.before`: argv run before every execution. */
  readonly run?: {readonly before: readonly string[]}
  /** Stage-local egress; a policy with any has no `allow` (they cannot be combined). */
  readonly network_stages?: Partial<Record<NetworkStageName, NetworkStage>>
  readonly repository?: RepositoryCheckout
  readonly expose?: {readonly https: {readonly base?: string; readonly routes: readonly ExposeHttpsRoute[]}}
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
export const POLICY_KEYS = ['version', 'repository', 'sandbox', 'expose'] as const
export const SANDBOX_KEYS = ['image', 'resources', 'docker', 'services', 'dependencies', 'run', 'network', 'credentials'] as const
export const IMAGE_KEYS = ['ref'] as const
export const NETWORK_KEYS = ['default', 'allow', 'deny', 'dependencies', 'services', 'execution'] as const
export const RULE_KEYS = ['host', 'ports', 'reason'] as const

/** How much a policy may declare (docs/policy.md, "Limits"). */
export const POLICY_LIMITS = {
  /** allow, deny and stage allow rules together: the egress proxy checks them on every connection. */
  maxRules: 1024,
  maxBlocks: 64,
  /** Entries of one list inside a block (inputs.files, outputs.dirs, outputs.files) and variables of its env. */
  maxBlockEntries: 256,
  maxRoutes: 64,
  maxRouteHosts: 64,
  /** sandbox.credentials: route names the repository asks for. */
  maxCredentialRequests: 64,
} as const
