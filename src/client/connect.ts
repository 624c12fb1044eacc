import {spawn} from 'node:child_process'
import {mkdir, open, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError, isCleanroomError} from '../errors/index.js'
import {defaultSocketPath, stateDir} from '../paths.js'
import {DaemonClient} from './client.js'

const START_TIMEOUT_MS = 15_000

export interface ConnectOptions {
  /** `unix:///path/to/socket`; default: $CLEANROOM_HOST, else the per-user socket. */
  host?: string
  /** The CLI's `bin/run.js`, used to start the daemon when none answers. */
  runScript: string
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
 * A client of a running daemon. When none answers, one is started in the
 * background (logging to the state dir), so nobody has to run `cleanroom serve` by hand.
 */
export async function connectDaemon(options: ConnectOptions): Promise<DaemonClient> {
  const env = options.env ?? process.env
  const client = new DaemonClient(socketPathOf(options.host, env))
  if (await answers(client)) return client

  const logPath = join(stateDir(env), 'daemon.log')
  await mkdir(stateDir(env), {recursive: true, mode: 0o700})
  const log = await open(logPath, 'a', 0o600)
  try {
    const child = spawn(process.execPath, [options.runScript, 'serve', '--listen', `unix://${client.socketPath}`], {
      detached: true,
      stdio: ['ignore', log.fd, log.fd],
      env,
    })
    child.unref()
  } finally {
    await log.close()
  }

  const deadline = Date.now() + START_TIMEOUT_MS
  while (Date.now() < deadline) {
    if (await answers(client)) return client
    await sleep(25)
  }
  const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
  throw new CleanroomError('daemon_unavailable', `the cleanroom daemon did not start within ${START_TIMEOUT_MS / 1000}s (log: ${logPath})\n${tail}`, {
    suggestions: ['Run it in the foreground to see why: cleanroom serve'],
  })
}

async function answers(client: DaemonClient): Promise<boolean> {
  try {
    await client.ping()
    return true
  } catch (error) {
    if (isCleanroomError(error) && error.code === 'daemon_unavailable') return false
    throw error
  }
}
