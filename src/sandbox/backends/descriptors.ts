import type {SettingsOf} from '../../config/settings.js'
import {GVISOR} from './gvisor/descriptor.js'
import {LINUX_NS} from './linux-ns/descriptor.js'

/** Every backend of this build, by the name `--backend` and `default_backend` take. */
export const BACKEND_DESCRIPTORS = {'linux-ns': LINUX_NS, gvisor: GVISOR}

export type BackendName = keyof typeof BACKEND_DESCRIPTORS

/** A backend's settings as the runtime config holds them (`backends.<name>`). */
export type BackendSettings<N extends BackendName> = SettingsOf<(typeof BACKEND_DESCRIPTORS)[N]['settings']>
