import type {AgentSpecInput} from '../agents/spec.js'
import {type CredentialSettings, DEFAULT_CREDENTIAL_SETTINGS} from '../credentials/settings.js'
import {type BackendName, type BackendSettings, BACKEND_DESCRIPTORS} from '../sandbox/backends/descriptors.js'
import {defaultsOf} from './settings.js'

export type {BackendName} from '../sandbox/backends/descriptors.js'
export {GVISOR_PLATFORMS, type GvisorPlatform} from '../sandbox/backends/gvisor/descriptor.js'

export const BACKENDS = Object.keys(BACKEND_DESCRIPTORS) as readonly BackendName[]

export type LinuxNsSettings = BackendSettings<'linux-ns'>
export type GvisorSettings = BackendSettings<'gvisor'>

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
  backends: {[N in BackendName]: BackendSettings<N>}
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
    'linux-ns': defaultsOf(BACKEND_DESCRIPTORS['linux-ns'].settings),
    gvisor: defaultsOf(BACKEND_DESCRIPTORS.gvisor.settings),
  },
  egress: {max_connections_per_sandbox: 1024, audit_failure: 'deny'},
  agents: {},
  credentials: DEFAULT_CREDENTIAL_SETTINGS,
  registries: {},
}
