import {spawn} from 'node:child_process'
import type {Server} from 'node:net'

import {CleanroomError} from '../../../errors/index.js'
import {listenArgv} from './nsinit.js'
import {execTarget, type LinuxNsRuntime} from './runtime.js'

const HANDOVER_TIMEOUT_MS = 10_000

/**
 * A server listening on 127.0.0.1:`port` inside the sandbox's network namespace,
 * accepting in this process: nsinit creates the socket there and sends it over the
 * IPC channel, then exits, so nothing of cleanroom runs inside the sandbox. When
 * this process dies the socket closes and connections are refused (fail closed).
 */
export function listenInside(nsinit: string, runtime: LinuxNsRuntime, port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const child = spawn(nsinit, listenArgv(execTarget(runtime), port), {stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: {}})
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const timer = setTimeout(() => child.kill('SIGKILL'), HANDOVER_TIMEOUT_MS)
    child.once('message', (_message, handle) => {
      clearTimeout(timer)
      child.disconnect()
      resolve(handle as Server)
    })
    child.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      // After a handover this is a no-op: the promise is already settled.
      reject(new CleanroomError('backend_failed', `could not listen on 127.0.0.1:${port} in the sandbox (nsinit exited ${code}): ${stderr.trim()}`))
    })
  })
}
