import {spawn} from 'node:child_process'
import {mkdir, open, readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError} from '../errors/index.js'
import {stateDir} from '../paths.js'
import {closeInheritedFds} from '../util/fds.js'
import {socketAnswers} from '../util/socket.js'

const START_TIMEOUT_MS = 15_000

/**
 * Starts `cleanroom serve` on `socketPath` unless a daemon listens there by now,
 * detached, its output in the state dir's daemon.log, and waits until it listens.
 */
export async function startDaemon(socketPath: string, runScript: string, env: NodeJS.ProcessEnv): Promise<void> {
  if (await socketAnswers(socketPath)) return
  const logPath = join(stateDir(env), 'daemon.log')
  await mkdir(stateDir(env), {recursive: true, mode: 0o700})
  const log = await open(logPath, 'a', 0o600)
  // The daemon gets stdio and nothing else: the CLI's inherited fds (it needs none) would pass to it.
  closeInheritedFds()
  try {
    const child = spawn(process.execPath, [runScript, 'serve', '--listen', `unix://${socketPath}`], {
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
    if (await socketAnswers(socketPath)) return
    await sleep(25)
  }
  const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n')
  throw new CleanroomError('daemon_unavailable', `the cleanroom daemon did not start within ${START_TIMEOUT_MS / 1000}s (log: ${logPath})\n${tail}`, {
    suggestions: ['Run it in the foreground to see why: cleanroom serve'],
  })
}
