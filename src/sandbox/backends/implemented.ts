import {BACKENDS, type BackendName, DEFAULT_RUNTIME_CONFIG} from '../../config/schema.js'
import {createBackends} from './index.js'

/** The backends this build can run: those the backend registry makes. */
export function implementedBackends(): BackendName[] {
  return [...createBackends(DEFAULT_RUNTIME_CONFIG).keys()]
}

/** The backends a user can name (`--backend`, `default_backend`) that this build cannot run yet. */
export function unimplementedBackends(): BackendName[] {
  const implemented = new Set(implementedBackends())
  return BACKENDS.filter((name) => !implemented.has(name))
}
