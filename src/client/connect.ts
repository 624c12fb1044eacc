import {CleanroomError} from '../errors/index.js'
import {defaultSocketPath} from '../paths.js'
import {DaemonClient} from './client.js'

/** The CLI as the daemon sees it. */
export interface CliInfo {
  /** The CLI's `bin/run.js`, used to start the daemon when none answers. */
  runScript: string
  /** The CLI's version: a daemon of another version refuses its requests, saying so. */
  version?: string
}

export interface ConnectOptions extends CliInfo {
  /** `unix:///path/to/socket`; default: $CLEANROOM_HOST, else the per-user socket. */
  host?: string
  env?: NodeJS.ProcessEnv
}

/** The socket a host string names: only `unix://` hosts exist today. */
export function socketPathOf(host: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const value = host ?? env.CLEANROOM_HOST
  if (value === undefined || value === '') return defaultSocketPath(env)
  if (!value.startsWith('unix://') || !value.slice('unix://'.length).startsWith('/')) {
    throw new CleanroomError('usage', `unsupported daemon address ${value}`, {suggestions: ['Use unix:///absolute/path/to/cleanroom.sock']})
  }
  return value.slice('unix://'.length)
}

/**
 * A client of the daemon. When none answers its first request, one is started in
 * the background (logging to the state dir) and the request sent again, so nobody
 * has to run `cleanroom serve` by hand, and a running daemon costs no extra round trip.
 */
export function connectDaemon(options: ConnectOptions): DaemonClient {
  const env = options.env ?? process.env
  const socketPath = socketPathOf(options.host, env)
  const start = async () => {
    // Only here: the modules that start a daemon cost start-up time nobody else needs to pay.
    const {startDaemon} = await import('./autostart.js')
    await startDaemon(socketPath, options.runScript, env)
  }
  return new DaemonClient(socketPath, {start, ...(options.version === undefined ? {} : {version: options.version})})
}
