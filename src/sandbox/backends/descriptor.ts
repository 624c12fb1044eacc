import type {SettingsSchema} from '../../config/settings.js'
import type {Capabilities} from '../types.js'

/**
 * What a backend declares about itself as data, loaded without the backend's code: the
 * runtime config reads its settings (`backends.<name>.*`, their defaults and template
 * comments) and `doctor` shows its capabilities from here.
 */
export interface BackendDescriptor<S extends SettingsSchema = SettingsSchema> {
  /** One line for people: what isolates the sandbox, and the package it needs. */
  summary: string
  settings: S
  capabilities: Capabilities
}
