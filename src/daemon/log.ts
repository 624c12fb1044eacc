import {constants, copyFileSync, fstatSync, ftruncateSync, readFileSync, statSync, writeSync} from 'node:fs'

import {messageOf} from '../errors/index.js'

export type Logger = (message: string) => void

/** Past this size the daemon log is rotated to daemon.log.1 (one earlier file is kept). */
export const DAEMON_LOG_MAX_BYTES = 10 * 1024 * 1024

/**
 * The daemon's log: timestamped lines on `fd` (stderr). When that fd is the file
 * `logPath` opened for appending (as the CLI starts the daemon), the file is kept
 * under `maxBytes`: past it, its lines are copied to `<logPath>.1` and it starts
 * again from empty. Truncating in place keeps the one fd everything writes to,
 * crash traces included; a copy that fails (a full disk) drops the old lines and says so.
 */
export function daemonLogger(logPath: string, options: {fd?: number; maxBytes?: number} = {}): Logger {
  const fd = options.fd ?? 2
  const maxBytes = options.maxBytes ?? DAEMON_LOG_MAX_BYTES
  const rotating = isFileOpenForAppend(fd, logPath)
  const write = (message: string) => {
    try {
      writeSync(fd, `${new Date().toISOString()} ${message}\n`)
    } catch {
      // A log line that cannot be written (a full disk) is not worth stopping the daemon for.
    }
  }
  return (message) => {
    write(message)
    if (!rotating || fstatSync(fd).size < maxBytes) return
    let note = `log rotated: the lines before are in ${logPath}.1`
    try {
      copyFileSync(logPath, `${logPath}.1`)
    } catch (error) {
      note = `log rotated: the lines before are lost, they could not be copied to ${logPath}.1: ${messageOf(error)}`
    }
    ftruncateSync(fd, 0)
    write(note)
  }
}

function isFileOpenForAppend(fd: number, path: string): boolean {
  try {
    const open = fstatSync(fd)
    const named = statSync(path)
    if (!open.isFile() || open.ino !== named.ino || open.dev !== named.dev) return false
    const flags = /^flags:\s+([0-7]+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1]
    return flags !== undefined && (Number.parseInt(flags, 8) & constants.O_APPEND) !== 0
  } catch {
    return false
  }
}
