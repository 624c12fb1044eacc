import type {RegistrySettings} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import type {RegistryAccess} from './auth.js'

/**
 * The transport and credentials for `registry` from the runtime config, the
 * secrets read from `env` (the CLI's environment) by the names the config
 * gives. A named variable that is not set is an error, not an anonymous pull.
 */
export function registryAccess(registries: Readonly<Record<string, RegistrySettings>>, registry: string, env: NodeJS.ProcessEnv = process.env): RegistryAccess {
  const settings = registries[registry]
  if (!settings) return {}
  const access: RegistryAccess = {}
  if (settings.insecure !== undefined) access.insecure = settings.insecure
  const secret = (key: 'password_env' | 'token_env'): string => {
    const name = settings[key]!
    const value = env[name]
    if (value === undefined || value === '') {
      throw new CleanroomError('registry_auth_failed', `registries."${registry}".${key} names ${name}, which is not set in this environment`, {
        suggestions: [`Set it before running cleanroom: export ${name}=…`],
      })
    }
    return value
  }
  if (settings.username !== undefined && settings.password_env !== undefined) {
    access.username = settings.username
    access.password = secret('password_env')
  }
  if (settings.token_env !== undefined) access.token = secret('token_env')
  return access
}
