import {closeSync, readdirSync, readFileSync} from 'node:fs'

/** O_CLOEXEC as /proc/self/fdinfo shows it (octal 02000000 on every Linux architecture Node runs on but alpha, sparc and parisc). */
const O_CLOEXEC = 0o2000000

/**
 * Closes the fds above 2 this process inherited from whoever started it (a shell's
 * `exec 200<dir`, a CI runner's pipe) that would pass on to the processes it starts,
 * sandboxes included. Node and libuv open their own fds with O_CLOEXEC, and at start
 * libuv marks fds 0-15 close-on-exec too (uv_disable_stdio_inheritance), so the fds
 * without O_CLOEXEC are exactly the inherited ones that would pass on. Node's IPC
 * channel, when there is one, stays. Returns the fds closed.
 */
export function closeInheritedFds(env: NodeJS.ProcessEnv = process.env): number[] {
  const channel = env.NODE_CHANNEL_FD === undefined ? undefined : Number(env.NODE_CHANNEL_FD)
  const closed: number[] = []
  let names: string[]
  try {
    names = readdirSync('/proc/self/fd')
  } catch {
    // No /proc: nothing to learn the fds from.
    return closed
  }
  for (const name of names) {
    const fd = Number(name)
    if (!Number.isInteger(fd) || fd <= 2 || fd === channel) continue
    let flags: string | undefined
    try {
      flags = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1]
    } catch {
      // readdir's own fd, closed by now
      continue
    }
    if (flags === undefined || (Number.parseInt(flags, 8) & O_CLOEXEC) !== 0) continue
    closeSync(fd)
    closed.push(fd)
  }
  return closed
}
