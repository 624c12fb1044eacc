import type {AgentSpecInput} from '../agents/spec.js'
import {type CredentialSettings, DEFAULT_CREDENTIAL_SETTINGS} from '../credentials/settings.js'

export const BACKENDS = ['linux-ns', 'gvisor'] as const
export type BackendName = (typeof BACKENDS)[number]

export const GVISOR_PLATFORMS = ['systrap', 'ptrace'] as const
export type GvisorPlatform = (typeof GVISOR_PLATFORMS)[number]

export interface LinuxNsSettings {
  /** The bubblewrap binary: a name looked up on PATH, or an absolute path. */
  bwrap_path: string
}

export interface GvisorSettings {
  /** The runsc binary: a name looked up on PATH, or an absolute path. */
  runsc_path: string
  /** How runsc intercepts system calls; systrap works without KVM. */
  platform: GvisorPlatform
}

/** The runtime config (`config.yaml`): the machine's settings, not the repository's. */
export interface RuntimeConfig {
  default_backend: BackendName
  backends: {
    'linux-ns': LinuxNsSettings
    gvisor: GvisorSettings
  }
  /** Custom agents and overrides of plugin agents, by name. */
  agents: Record<string, AgentSpecInput>
  /** What the credential gateway may use, and how (docs/credentials.md). */
  credentials: CredentialSettings
}

export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  default_backend: 'linux-ns',
  backends: {
    'linux-ns': {bwrap_path: 'bwrap'},
    gvisor: {runsc_path: 'runsc', platform: 'systrap'},
  },
  agents: {},
  credentials: DEFAULT_CREDENTIAL_SETTINGS,
}
