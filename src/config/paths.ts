import {homedir} from 'node:os'
import {isAbsolute, join} from 'node:path'

/** `$XDG_CONFIG_HOME/cleanroom/config.yaml`, else `~/.config/cleanroom/config.yaml`. */
export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  const xdg = env.XDG_CONFIG_HOME
  const base = xdg !== undefined && isAbsolute(xdg) ? xdg : join(env.HOME || homedir(), '.config')
  return join(base, 'cleanroom', 'config.yaml')
}
