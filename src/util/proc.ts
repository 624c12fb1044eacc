import {readdir, readFile, readlink} from 'node:fs/promises'

/** The pids /proc lists now, as it names them (a process may end before it is read). */
export async function processIds(): Promise<string[]> {
  return (await readdir('/proc')).filter((entry) => /^\d+$/.test(entry))
}

/** __SO_ACCEPTCON in /proc/net/unix: the socket listens. */
const LISTENING = 0x10000

/** The inodes of the listening unix sockets bound at `paths` (an abstract name as `@name`), in this network namespace. */
export async function listeningSocketInodes(paths: readonly string[]): Promise<Set<number>> {
  const inodes = new Set<number>()
  const table = await readFile('/proc/net/unix', 'utf8').catch(() => '')
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/)
    if (fields.length < 8) continue
    const path = fields.slice(7).join(' ')
    if ((Number.parseInt(fields[3]!, 16) & LISTENING) !== 0 && paths.includes(path)) inodes.add(Number(fields[6]))
  }
  return inodes
}

/** Whether process `pid` has one of the sockets `inodes` open. */
export async function holdsSocket(pid: number, inodes: ReadonlySet<number>): Promise<boolean> {
  const fds = await readdir(`/proc/${pid}/fd`).catch(() => [])
  for (const fd of fds) {
    const target = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '')
    const inode = /^socket:\[(\d+)\]$/.exec(target)?.[1]
    if (inode !== undefined && inodes.has(Number(inode))) return true
  }
  return false
}

/** The real uid and start time (clock ticks since boot) of a process, and whether it has exited (a zombie); undefined when there is none. */
export async function processIdentity(pid: number): Promise<{uid: number; startTime: number; zombie: boolean} | undefined> {
  try {
    const [stat, status] = await Promise.all([readFile(`/proc/${pid}/stat`, 'utf8'), readFile(`/proc/${pid}/status`, 'utf8')])
    // Fields after the command name, which may itself hold spaces and parentheses.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1]
    if (fields[0] === undefined || fields[19] === undefined || uid === undefined) return undefined
    return {uid: Number(uid), startTime: Number(fields[19]), zombie: fields[0] === 'Z' || fields[0] === 'X'}
  } catch {
    return undefined
  }
}
