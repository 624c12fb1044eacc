import {chmod, chown, rm} from 'node:fs/promises'
import {createServer, type Server, type Socket} from 'node:net'
import {join} from 'node:path'

import {CleanroomError} from '../../../errors/index.js'
import {SANDBOX_PATH} from '../../layout.js'
import {GUEST, guestEgressSocket, processSpec} from './bundle.js'
import {CONTAINER_ID, processFile, rootFlags, spawnRunsc} from './runsc.js'
import type {GvisorRuntime} from './runtime.js'

/** `nsinit forward` exits 3 when the port is taken: a forwarder from before a daemon restart still serves it. */
const FORWARD_IN_USE = 3
const START_TIMEOUT_MS = 15_000
/** Connections the forwarder may have waiting for this process to accept: a burst (thousands at once) waits here, not in the forwarder. */
const BACKLOG = 4096

/**
 * A server this process accepts on for 127.0.0.1:`port` inside the sandbox. A gVisor
 * sandbox's loopback is its own kernel's, which no host socket enters: the daemon
 * listens on `<run dir>/egress/<port>.sock`, which only the sandbox's root may open,
 * and `nsinit forward`, started inside as that root, listens on the port and relays
 * each connection to the socket. When this process dies the socket refuses, and the
 * forwarder closes the port and exits: egress fails closed. `forwarderStarted`: the
 * sandbox's init started the forwarder (nsinit init --forward) and no connection has
 * reached it yet (the sandbox has only just been made), so none is started here.
 */
export async function listenInside(runsc: string, runtime: GvisorRuntime, port: number, {forwarderStarted = false} = {}): Promise<Server> {
  const path = join(runtime.run_dir, 'egress', `${port}.sock`)
  // The socket of a daemon that died: its path is this daemon's now.
  await rm(path, {force: true})
  const server = createServer()
  // Connections the forwarder relays before this returns wait for the caller's handler.
  const early: Socket[] = []
  const hold = (socket: Socket) => early.push(socket)
  server.on('connection', hold)
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen({path, backlog: BACKLOG}, () => {
      server.off('error', reject)
      resolve()
    })
  })
  try {
    await chown(path, runtime.host_uid, runtime.host_uid)
    await chmod(path, 0o600)
    if (!forwarderStarted) await startForwarder(runsc, runtime, port)
  } catch (error) {
    for (const socket of early) socket.destroy()
    server.close()
    throw error
  }
  server.off('connection', hold)
  // The caller attaches its handler as soon as this resolves, before any immediate runs.
  setImmediate(() => {
    for (const socket of early) server.emit('connection', socket)
  })
  return server
}

/** `runsc exec` of `nsinit forward` as the sandbox's root: it returns once the forwarder listens (or another does). */
async function startForwarder(runsc: string, runtime: GvisorRuntime, port: number): Promise<void> {
  const args = [GUEST.nsinit, 'forward', '--port', String(port), '--socket', guestEgressSocket(port)]
  const spec = await processFile(runtime.state_dir, processSpec({uid: 0, args, env: {PATH: SANDBOX_PATH}}))
  let child
  try {
    child = spawnRunsc(runsc, [...rootFlags(runtime), 'exec', '--process', '/dev/fd/3', CONTAINER_ID], ['ignore', 'pipe', 'pipe', spec.fd])
  } finally {
    await spec.close()
  }
  let output = ''
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), START_TIMEOUT_MS)
  const code = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject)
    child.once('close', resolve)
  }).finally(() => clearTimeout(timer))
  if (code === 0 || code === FORWARD_IN_USE) return
  throw new CleanroomError('backend_failed', `could not listen on 127.0.0.1:${port} in the sandbox (nsinit forward exited ${code}): ${output.trim()}`)
}
