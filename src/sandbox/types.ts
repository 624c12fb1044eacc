import type {BackendName} from '../config/schema.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {SandboxResources} from './resources.js'

export const SANDBOX_STATUSES = ['provisioning', 'ready', 'stopping', 'stopped', 'failed'] as const
export type SandboxStatus = (typeof SANDBOX_STATUSES)[number]

/** What a backend can do; a policy needing a capability the backend lacks fails launch. */
export interface Capabilities {
  'network.default_deny': boolean
  'network.allowlist_egress': boolean
  'sandbox.persistent': boolean
  'exec.tty': boolean
  'files.copy': boolean
  /** No resolver inside; names are resolved by the egress proxy only. */
  'dns_control_or_equivalent': boolean
  /** Runs a policy's OCI image (`sandbox.image.ref`) as the root filesystem. */
  'images.oci': boolean
  /** Enforces a CPU quota (`sandbox.resources.vcpus`). */
  'resources.cpu': boolean
  /** Enforces a memory limit (`sandbox.resources.memory`). */
  'resources.memory': boolean
  /** Enforces a limit on what the sandbox writes (`sandbox.resources.disk`). */
  'resources.disk': boolean
  /** Starts a Docker daemon inside (`sandbox.docker.required`). */
  'services.docker': boolean
  /** Runs `sandbox.dependencies` and `sandbox.services` blocks, caching their outputs, and scopes egress by stage. */
  'policy.stages': boolean
  /** Runs `sandbox.run.before` before every execution. */
  'policy.run_before': boolean
  /** Checks the repository out as a `repository:` block says (remote, path, submodules, or none). */
  'repository.checkout': boolean
  /** Serves `expose.https` routes into the sandbox. */
  'expose.https': boolean
}

export type CapabilityName = keyof Capabilities

/** A sandbox as the daemon records it (state.json) and the API returns it. */
export interface SandboxRecord {
  sandbox_id: string
  status: SandboxStatus
  backend: BackendName
  policy_hash: string
  policy: CompiledPolicy
  /** The repository's policy file the daemon compiled `policy` from; null for the default policy or one a client sent compiled. */
  policy_source?: string | null
  /** `--dangerously-allow-all`: the proxy allows every destination its deny rules and address checks let through. */
  allow_all: boolean
  /** The host directory shown at /workspace, or null for an empty workspace. */
  workspace_source: string | null
  /** A sandbox on an image: the policy's reference, its pinned digest, and the image's config digest (which root filesystem). */
  image_ref?: string
  image_digest?: string
  image_id?: string
  created_at: string
  updated_at: string
  /** The shared agent cache's entry mounted read-only at /cleanroom/agent (created by `cleanroom agent`), and what it holds. */
  agent_package?: {entry: string; package: string; version: string}
  /** When an execution last started or ended in it; absent until one has. */
  last_used_at?: string
  /** Created for one command: removed when that command's execution ends or its client goes away. */
  ephemeral?: boolean
  /** Why the sandbox failed, when status is failed. */
  failure?: string
  /** The limits in force; null when the backend could set none. */
  resources?: SandboxResources | null
  /** Backend-owned facts needed to reach the sandbox again (pids, paths); opaque to everyone else. */
  runtime?: Record<string, unknown>
}

export interface ExecRequest {
  argv: string[]
  env: Record<string, string>
  tty: boolean
  cols?: number
  rows?: number
  /** Working directory inside the sandbox; /workspace by default. */
  cwd?: string
}

export interface ExitStatus {
  /** The exit code, or 128 + the signal number when the process was killed by a signal. */
  exit_code: number
  signal: string | null
}
