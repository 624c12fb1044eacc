import {randomBytes, timingSafeEqual} from 'node:crypto'
import {chmod, chown, rm} from 'node:fs/promises'
import {createServer, type Server, type Socket} from 'node:net'
import {constants} from 'node:os'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'

import {CleanroomError} from '../../../errors/index.js'
import type {SandboxProcess} from '../../backend.js'
import type {ExitStatus} from '../../types.js'
import {parseStatus, type ResolvedCommand, sandboxGone, statusLine, unusableWorkingDirectory} from './exec-status.js'

/** The exec server's socket, in the run dir's exec dir: bound into the sandbox at GUEST.exec. */
export const EXEC_SOCKET = 'exec.sock'

/** A connection's first line, "<token> <role>\n" or "main <key>\n": anything longer is no hello. */
const HELLO_BYTES = 80
const HELLO_TIMEOUT_MS = 5_000
/** Connections yet to name themselves, at once: the workload can reach the socket too, and more are closed unread. */
const UNNAMED_LIMIT = 32
/** From the request to the exec's four connections: the server answers in milliseconds, a stuck one gets this long. */
const CONNECT_TIMEOUT_MS = 10_000
/** Init starts the server as the sandbox comes up, so an exec right after a create may come first: it waits this long, once. */
const FIRST_CONNECT_MS = 2_000
/** What the server says on ctl is one short line ("chdir <strerror>" is the longest). */
const STATUS_BYTES = 256
/** The largest request the server takes (guest-serve.c MAX_FRAME); the kernel's own limit on a command line is lower. */
const MAX_FRAME_BYTES = 4 * 1024 * 1024
const ROLES = ['in', 'out', 'err', 'ctl'] as const
type Role = (typeof ROLES)[number]
type Connections = Record<Role, Socket>

interface Waiting {
  connections: Partial<Connections>
  done(connections: Connections): void
  /** The server is gone before the exec's connections were all made: the command never started. */
  gone(): void
}


/**
 * The daemon's end of a gVisor sandbox's exec server (guest-serve.c): a unix socket the
 * server inside connects to once with the key the daemon gave init on its stdin, and then
 * once per role of every exec it is asked to run. Every connection first says who it is;
 * one that does not, in time and within a line, or names no exec awaited, is closed:
 * the socket is reachable by the workload, which knows neither the key nor any token.
 * A main connection that ends is never replaced; the backend then runs execs with
 * `runsc exec` (as after a daemon restart, when no server is connected at all).
 */
export class ExecServer {
  readonly key = randomBytes(32).toString('hex')
  private main: Socket | undefined
  private mainEnded = false
  private unnamed = 0
  private readonly waiting = new Map<string, Waiting>()
  private arrived: () => void = () => undefined
  private readonly mainArrived = new Promise<void>((resolve) => (this.arrived = resolve))

  private constructor(private readonly server: Server) {}

  /** Listens on `<dir>/exec.sock`, which `owner` (the server's uid inside, and the sandbox's kernel) may connect to. */
  static async listen(dir: string, owner: {uid: number; gid: number}): Promise<ExecServer> {
    const path = join(dir, EXEC_SOCKET)
    await rm(path, {force: true})
    const server = createServer()
    // The daemon's API keeps it running: a sandbox's exec server never does on its own (nor an idle main connection, below).
    server.unref()
    const link = new ExecServer(server)
    server.on('connection', (socket) => link.accept(socket))
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({path}, () => {
        server.off('error', reject)
        resolve()
      })
    })
    try {
      await chown(path, owner.uid, owner.gid)
      await chmod(path, 0o660)
    } catch (error) {
      link.close()
      throw error
    }
    return link
  }

  /** The server inside has connected and its connection holds. */
  get connected(): boolean {
    return this.main !== undefined && !this.main.destroyed
  }

  close(): void {
    this.end()
    this.main?.destroy()
    this.server.close()
  }

  /**
   * Runs `request` as a child of the server; its stdio are three of the connections, its
   * end is told on the fourth. Undefined when there is no server (any more) and the command
   * did not start: the caller runs it another way.
   */
  async start(request: ResolvedCommand, isAlive: () => Promise<boolean>): Promise<SandboxProcess | undefined> {
    if (!(await this.ready())) return undefined
    const token = randomBytes(32).toString('hex')
    const strings = [token, request.cwd, String(request.argv.length), ...request.argv, ...Object.entries(request.env).map(([name, value]) => `${name}=${value}`)]
    if (strings.some((text) => text.includes('\0'))) throw new CleanroomError('bad_request', 'a command word, the working directory or an environment entry holds a NUL byte')
    const body = Buffer.from(`${strings.join('\0')}\0`, 'utf8')
    if (body.length > MAX_FRAME_BYTES) throw new CleanroomError('bad_request', `the command and its environment are ${body.length} bytes: more than ${MAX_FRAME_BYTES} cannot be run`)
    const frame = Buffer.alloc(4 + body.length)
    frame.writeUInt32BE(body.length, 0)
    body.copy(frame, 4)
    const connections = await new Promise<Connections | undefined>((resolve, reject) => {
      const settle = () => {
        clearTimeout(timer)
        this.waiting.delete(token)
        for (const socket of Object.values(waiting.connections)) socket.destroy()
      }
      const timer = setTimeout(() => {
        settle()
        reject(new Error(`the exec server inside made no connections for the command within ${CONNECT_TIMEOUT_MS / 1000} s`))
      }, CONNECT_TIMEOUT_MS)
      const waiting: Waiting = {
        connections: {},
        done: (all) => {
          clearTimeout(timer)
          this.waiting.delete(token)
          resolve(all)
        },
        gone: () => {
          settle()
          resolve(undefined)
        },
      }
      this.waiting.set(token, waiting)
      this.main!.write(frame)
    }).catch(async (error: Error) => {
      if (!(await isAlive())) throw sandboxGone()
      throw new CleanroomError('backend_failed', `could not run the command in the sandbox: ${error.message}`, {cause: error})
    })
    return connections && served(connections, request.cwd, isAlive)
  }

  /** The server is connected, after a wait for its first connection if it has never connected. */
  private async ready(): Promise<boolean> {
    if (this.connected || this.mainEnded) return this.connected
    let timer: NodeJS.Timeout | undefined
    await Promise.race([this.mainArrived, new Promise<void>((resolve) => (timer = setTimeout(resolve, FIRST_CONNECT_MS)))])
    clearTimeout(timer)
    // A server slower than that is not waited for again; one that comes later is refused.
    if (!this.connected) this.end()
    return this.connected
  }

  /** No server from now on: the execs waiting for their connections are run another way. */
  private end(): void {
    this.mainEnded = true
    this.arrived()
    for (const waiting of [...this.waiting.values()]) waiting.gone()
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined)
    if (this.unnamed >= UNNAMED_LIMIT) {
      socket.destroy()
      return
    }
    this.unnamed++
    let head = Buffer.alloc(0)
    const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS)
    const settle = () => {
      clearTimeout(timer)
      this.unnamed--
      socket.off('data', onData)
      socket.off('close', onClose)
    }
    const onClose = () => settle()
    const onData = (chunk: Buffer) => {
      head = Buffer.concat([head, chunk])
      const end = head.indexOf(0x0a)
      if (end === -1) {
        if (head.length > HELLO_BYTES) socket.destroy()
        return
      }
      settle()
      socket.pause()
      const rest = head.subarray(end + 1)
      if (end > HELLO_BYTES || !this.admit(socket, head.subarray(0, end).toString('latin1'))) {
        socket.destroy()
        return
      }
      if (rest.length > 0) socket.unshift(rest)
    }
    socket.on('data', onData)
    socket.once('close', onClose)
  }

  /** Takes a connection that said `hello`, or returns false. */
  private admit(socket: Socket, hello: string): boolean {
    const [name = '', value, extra] = hello.split(' ')
    if (extra !== undefined || value === undefined) return false
    if (name === 'main') {
      if (this.mainEnded || this.main || !sameText(value, this.key)) return false
      this.main = socket
      socket.unref()
      this.arrived()
      socket.once('close', () => this.end())
      socket.resume()
      // The server sends nothing after its hello: whatever comes is dropped.
      socket.on('data', () => undefined)
      return true
    }
    const waiting = this.waiting.get(name)
    const role = ROLES.find((known) => known === value)
    if (!waiting || !role || waiting.connections[role]) return false
    waiting.connections[role] = socket
    if (ROLES.every((known) => waiting.connections[known])) waiting.done(waiting.connections as Connections)
    return true
  }
}

/** The exec as the backend hands it on: the server's ctl line is its end. */
function served(connections: Connections, cwd: string, isAlive: () => Promise<boolean>): SandboxProcess {
  const {in: stdin, ctl} = connections
  // The command may end before it read its input: what the daemon still writes then goes nowhere.
  stdin.on('error', () => undefined)
  ctl.on('error', () => undefined)
  // A command may write to its stdin too (it is a socket): read and dropped, so it never blocks on it.
  stdin.on('data', () => undefined)
  stdin.resume()
  // Paused since their hello: the caller starts them, as it would a child's pipes.
  const output = (socket: Socket) => {
    const stream = new PassThrough()
    socket.on('error', () => stream.end())
    return socket.pipe(stream)
  }
  const stdout = output(connections.out)
  const stderr = output(connections.err)
  const exited = statusLine(ctl, STATUS_BYTES).then(async (said): Promise<ExitStatus> => {
    const status = parseStatus(said)
    if (status) return status
    const chdir = /^chdir (.*)\n$/.exec(said)
    if (chdir) throw unusableWorkingDirectory(cwd, chdir[1]!)
    if (!(await isAlive())) throw sandboxGone()
    throw new CleanroomError('backend_failed', `the exec server inside ended the command without its status${said ? `: ${said.trim()}` : ''}`)
  })
  return {
    stdin,
    stdout,
    stderr,
    resize: () => undefined,
    signal: (signal) => {
      const number = constants.signals[signal]
      if (number !== undefined && !ctl.destroyed && ctl.writable) ctl.write(`signal ${number}\n`)
    },
    exited,
  }
}

/** The key compared in constant time: a workload that connects may try keys. */
function sameText(given: string, expected: string): boolean {
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}
