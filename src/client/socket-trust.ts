import {lstatSync, realpathSync, type Stats} from 'node:fs'
import {dirname, join} from 'node:path'

import {CleanroomError} from '../errors/index.js'

const STICKY = 0o1000
const WRITABLE_BY_OTHERS = 0o022

/**
 * Refuses a daemon socket that someone other than this user (or root) could have put
 * there, before anything is sent to it: the socket, if present, must be owned by this
 * user or root, its directory must be owned by them and writable by nobody else, and
 * so must every directory above it (one writable by others only with the sticky bit,
 * like /tmp). Symlinks are resolved first and their targets checked. A few lstat
 * calls: cheap enough for every command.
 */
export function requireTrustedSocket(socketPath: string): void {
  const dir = realDirectory(dirname(socketPath))
  // No directory, no socket: connecting fails, and starting a daemon checks what it would create.
  if (dir === undefined) return
  const refusal = `refusing to talk to a cleanroom daemon at ${socketPath}`
  requireTrustedChain(dir, refusal)
  const socket = lstatOrUndefined(join(dir, baseName(socketPath)))
  if (socket !== undefined && !trustedOwner(socket.uid)) {
    throw untrusted(refusal, `the socket is owned by ${who(socket.uid)}, not by you (${who(myUid())}) or root: another user's daemon, or an impostor, listens there`, [
      'Talk to a daemon of your own: unset CLEANROOM_HOST, or pass --host unix:///<a directory only you can write>/cleanroom.sock',
    ])
  }
}

/**
 * Refuses to start a daemon into `dir` (its socket or state directory, created if
 * missing) when the nearest existing directory and those above it are not this user's or root's alone.
 */
export function requireTrustedDirectory(dir: string): void {
  let existing = dir
  let real = realDirectory(existing)
  while (real === undefined && dirname(existing) !== existing) {
    existing = dirname(existing)
    real = realDirectory(existing)
  }
  if (real !== undefined) requireTrustedChain(real, `refusing to start a cleanroom daemon in ${dir}`)
}

/** `dir` (already resolved) and every directory above it belong to this user or root and nobody else can write them. */
function requireTrustedChain(dir: string, refusal: string): void {
  for (let current = dir, own = true; ; current = dirname(current), own = false) {
    const stats = lstatSync(current)
    if (!trustedOwner(stats.uid)) {
      throw untrusted(refusal, `${current} is owned by ${who(stats.uid)}, not by you (${who(myUid())}) or root`, [fixFor(current)])
    }
    // The socket's own directory must be closed even with the sticky bit: anyone could create the socket while no daemon runs.
    if ((stats.mode & WRITABLE_BY_OTHERS) !== 0 && (own || (stats.mode & STICKY) === 0)) {
      throw untrusted(refusal, `${current} is writable by other users (mode ${(stats.mode & 0o7777).toString(8).padStart(4, '0')}), so anyone could have put a socket there`, [
        `chmod go-w ${current} (if it is yours)`,
        fixFor(current),
      ])
    }
    if (dirname(current) === current) return
  }
}

function untrusted(refusal: string, why: string, suggestions: string[]): CleanroomError {
  return new CleanroomError('daemon_untrusted', `${refusal}: ${why}`, {suggestions})
}

function fixFor(path: string): string {
  return `Use directories only you can write, not under ${path}: set XDG_RUNTIME_DIR (socket) and XDG_STATE_HOME (state) to them, or pass --host unix:///<dir>/cleanroom.sock`
}

/** The directory with symlinks resolved; undefined when it is missing or cannot be searched (then no connection can be made either). */
function realDirectory(path: string): string | undefined {
  try {
    return realpathSync.native(path)
  } catch {
    return undefined
  }
}

function lstatOrUndefined(path: string): Stats | undefined {
  try {
    return lstatSync(path)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw error
  }
}

function baseName(path: string): string {
  return path.slice(path.lastIndexOf('/') + 1)
}

function myUid(): number {
  return process.geteuid?.() ?? 0
}

function trustedOwner(uid: number): boolean {
  return uid === 0 || uid === myUid()
}

function who(uid: number): string {
  return uid === 0 ? 'root' : `uid ${uid}`
}
