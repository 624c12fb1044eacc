import type {BackendName, RuntimeConfig} from '../../config/schema.js'
import type {SandboxBackend} from '../backend.js'
import {GvisorBackend} from './gvisor/index.js'
import {LinuxNsBackend} from './linux-ns/index.js'

/** The backends this build can run, configured from the runtime config. */
export function createBackends(config: RuntimeConfig): Map<BackendName, SandboxBackend> {
  return new Map<BackendName, SandboxBackend>([
    ['linux-ns', new LinuxNsBackend(config.backends['linux-ns'])],
    ['gvisor', new GvisorBackend(config.backends.gvisor)],
  ])
}
