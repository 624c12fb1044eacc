import {homedir} from 'node:os'
import {isAbsolute, join} from 'node:path'

function xdg(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const value = env[name]
  return value !== undefined && isAbsolute(value) ? value : join(env.HOME || homedir(), fallback)
}

/** `$XDG_STATE_HOME/cleanroom`: sandboxes' state, daemon log. */
export function stateDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(xdg(env, 'XDG_STATE_HOME', '.local/state'), 'cleanroom')
}

/** The daemon's socket: `$XDG_RUNTIME_DIR/cleanroom/cleanroom.sock`, else under the state dir. */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const runtime = env.XDG_RUNTIME_DIR
  const dir = runtime !== undefined && isAbsolute(runtime) ? join(runtime, 'cleanroom') : join(stateDir(env), 'run')
  return join(dir, 'cleanroom.sock')
}
