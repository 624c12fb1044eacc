import type {AgentSpecInput} from '../agents/spec.js'
import {type BackendName, type BackendSettings, BACKEND_DESCRIPTORS} from '../sandbox/backends/descriptors.js'
import {defaultsOf} from './settings.js'

export type {BackendName} from '../sandbox/backends/descriptors.js'
export {GVISOR_PLATFORMS, type GvisorPlatform} from '../sandbox/backends/gvisor/descriptor.js'

export const BACKENDS = Object.keys(BACKEND_DESCRIPTORS) as readonly BackendName[]

export type LinuxNsSettings = BackendSettings<'linux-ns'>
export type GvisorSettings = BackendSettings<'gvisor'>

/** The runtime config (`config.yaml`): the machine's settings, not the repository's. */
export interface RuntimeConfig {
  default_backend: BackendName
  backends: {[N in BackendName]: BackendSettings<N>}
  egress: EgressSettings
  /** Custom agents and overrides of plugin agents, by name. */
  agents: Record<string, AgentSpecInput>
}

export interface EgressSettings {
  /** Connections one sandbox may hold open through its proxy; more are closed at once. */
  max_connections_per_sandbox: number
}

export const DEFAULT_RUNTIME_CONFIG: RuntimeConfig = {
  default_backend: 'linux-ns',
  backends: {
    'linux-ns': defaultsOf(BACKEND_DESCRIPTORS['linux-ns'].settings),
    gvisor: defaultsOf(BACKEND_DESCRIPTORS.gvisor.settings),
  },
  egress: {max_connections_per_sandbox: 1024},
  agents: {},
}
