import type {AgentSpecInput} from '../agents/spec.js'
import {type CredentialSettings, DEFAULT_CREDENTIAL_SETTINGS} from '../credentials/settings.js'
import {DEFAULT_RESOURCES, type ResourceSettings} from './resources.js'

export const BACKENDS = ['linux-ns', 'gvisor'] as const
export type BackendName = (typeof BACKENDS)[number]

export const GVISOR_PLATFORMS = ['systrap', 'ptrace'] as const
export type GvisorPlatform = (typeof GVISOR_PLATFORMS)[number]

export interface LinuxNsSettings {
  /** The bubblewrap binary: a name looked up on PATH, or an absolute path. */
  bwrap_path: string
  /** Per-sandbox limits (cgroups) and the most a policy may ask for. */
  resources: ResourceSettings
}

export interface GvisorSettings {
  /** The runsc binary: a name looked up on PATH, or an absolute path. */
  runsc_path: string
  /** How runsc intercepts system calls; systrap works without KVM. */
  platform: GvisorPlatform
}

/** What egress does while a sandbox's audit log cannot be written (a full disk): refuse connections, or let them through unlogged. */
export const EGRESS_AUDIT_FAILURE_MODES = ['deny', 'allow'] as const
export type EgressAuditFailureMode = (typeof EGRESS_AUDIT_FAILURE_MODES)[number]

/** How to reach one image registry (docs/images.md#registries). Secrets are named, never written here. */
export interface RegistrySettings {
  /** Login name for basic auth; the password comes from `password_env`. */
  username?: string
  /** The environment variable (of the CLI) that holds the password. */
  password_env?: string
  /** The environment variable (of the CLI) that holds a bearer token, sent as is. */
  token_env?: string
  /** Speak plain HTTP to this registry (loopback registries always may). */
  insecure?: boolean
}

/** The runtime config (`config.yaml`): the machine's settings, not the repository's. */
export interface RuntimeConfig {
  default_backend: BackendName
  backends: {
    'linux-ns': LinuxNsSettings
    gvisor: GvisorSettings
  }
  egress: EgressSettings
  /** Custom agents and overrides of plugin agents, by name. */
  agents: Record<string, AgentSpecInput>
  /** What the credential gateway may use, and how (docs/credentials.md). */
  credentials: CredentialSettings
  /** Image registries by host (`ghcr.io`, `registry.internal:5000`). */
  registries: Record<string, RegistrySettings>
}

export interface EgressSettings {
  /** Connections one sandbox may hold open through its proxy; more are closed at once. */
  max_connections_per_sandbox: number
  /** deny (the default): no connection leaves a sandbox unlogged. */
  audit_failure: EgressAuditFailureMode
}

export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  default_backend: 'linux-ns',
  backends: {
    'linux-ns': {bwrap_path: 'bwrap', resources: DEFAULT_RESOURCES},
    gvisor: {runsc_path: 'runsc', platform: 'systrap'},
  },
  egress: {max_connections_per_sandbox: 1024, audit_failure: 'deny'},
  agents: {},
  credentials: DEFAULT_CREDENTIAL_SETTINGS,
  registries: {},
}
