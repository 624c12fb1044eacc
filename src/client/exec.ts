import type {Socket} from 'node:net'
import {join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {type Frame, FrameDecoder, FrameType, encodeFrame, encodeJsonFrame, framesOf} from '../daemon/protocol.js'
import {stateDir} from '../paths.js'
import type {ExecRequest, ExitStatus} from '../sandbox/types.js'
import type {DaemonClient} from './client.js'
import {enterRawMode} from './raw-terminal.js'

export interface Terminal {
  stdin: NodeJS.ReadStream
  stdout: NodeJS.WriteStream
  stderr: NodeJS.WriteStream
}

export interface ExecOutcome {
  exitCode: number
  /** True when the user pressed Ctrl-C twice and left the process running. */
  detached: boolean
}

/**
 * Runs a command in a sandbox with this process's terminal: output streams as
 * it comes, stdin is forwarded, the exit code comes back. Without a TTY the
 * first Ctrl-C is sent to the command as SIGINT and the second detaches (130).
 * With a TTY the terminal is raw (Ctrl-C reaches the program through the
 * sandbox's terminal), follows resizes, and is restored however the run ends.
 */
export async function runInSandbox(client: DaemonClient, sandboxId: string, request: ExecRequest, terminal: Terminal, started?: () => void): Promise<ExecOutcome> {
  const socket = await client.startExec(sandboxId, request)
  started?.()
  return pump(socket, request.tty, terminal, sandboxId)
}

/**
 * The terminal's size for a TTY exec, or nothing when it does not know one: some
 * CI runners and `script` without a terminal report 0×0, which means "unknown"
 * (the sandbox's terminal is then 80×24 until a resize says more).
 */
export function terminalSize(stdout: NodeJS.WriteStream): {cols: number; rows: number} | Record<string, never> {
  const {columns: cols, rows} = stdout
  return Number.isInteger(cols) && Number.isInteger(rows) && cols > 0 && rows > 0 ? {cols, rows} : {}
}

function pump(socket: Socket, tty: boolean, terminal: Terminal, sandboxId: string): Promise<ExecOutcome> {
  const {stdin, stdout, stderr} = terminal
  const cleanups: (() => void)[] = []
  const cleanup = () => {
    for (const undo of cleanups.splice(0).reverse()) undo()
  }

  return new Promise<ExecOutcome>((resolve, reject) => {
    let settled = false
    const finish = (outcome: ExecOutcome | Error) => {
      if (settled) return
      settled = true
      cleanup()
      if (outcome instanceof Error) reject(outcome)
      else resolve(outcome)
    }

    const decoder = new FrameDecoder()
    socket.pipe(decoder)
    decoder.on('data', (frame: Frame) => {
      switch (frame.type) {
        case FrameType.stdout: {
          stdout.write(frame.payload)
          break
        }
        case FrameType.stderr: {
          stderr.write(frame.payload)
          break
        }
        case FrameType.exit: {
          const status = JSON.parse(frame.payload.toString('utf8')) as ExitStatus
          finish({exitCode: status.exit_code, detached: false})
          break
        }
        case FrameType.error: {
          const error = JSON.parse(frame.payload.toString('utf8')) as {message: string}
          finish(new CleanroomError('backend_failed', error.message))
          break
        }
        default: {
          break
        }
      }
    })
    decoder.on('error', (error: Error) => finish(error))
    socket.on('error', (error: Error) => finish(error))
    socket.on('close', () => finish(execLost(sandboxId)))

    // stdin → the process. Paused again at the end, so a TTY stdin does not keep us alive.
    const onInput = (chunk: Buffer) => {
      for (const frame of framesOf(FrameType.stdin, chunk)) socket.write(frame)
    }
    const onInputEnd = () => socket.write(encodeFrame(FrameType.stdinEof))
    stdin.on('data', onInput)
    stdin.on('end', onInputEnd)
    cleanups.push(() => {
      stdin.off('data', onInput)
      stdin.off('end', onInputEnd)
      stdin.pause()
      socket.destroy()
    })

    if (tty && stdin.isTTY) {
      const restore = enterRawMode(stdin, stdout)
      process.once('exit', restore)
      cleanups.push(() => {
        restore()
        process.off('exit', restore)
      })
    }
    stdin.resume()

    if (tty) {
      const onResize = () => {
        const size = terminalSize(stdout)
        if ('cols' in size) socket.write(encodeJsonFrame(FrameType.resize, size))
      }
      stdout.on('resize', onResize)
      cleanups.push(() => stdout.off('resize', onResize))
    }

    let interrupts = 0
    const onInterrupt = () => {
      interrupts++
      if (interrupts === 1) {
        socket.write(encodeJsonFrame(FrameType.signal, {signal: 'SIGINT'}))
        return
      }
      stderr.write('cleanroom: detached; the command keeps running in the sandbox\n')
      finish({exitCode: 130, detached: true})
    }
    const onTerminate = () => socket.write(encodeJsonFrame(FrameType.signal, {signal: 'SIGTERM'}))
    process.on('SIGINT', onInterrupt)
    process.on('SIGTERM', onTerminate)
    cleanups.push(() => {
      process.off('SIGINT', onInterrupt)
      process.off('SIGTERM', onTerminate)
    })
  })
}

/** The stream ended without an exit frame: the daemon stopped or died, and with it every client's stream. */
function execLost(sandboxId: string): CleanroomError {
  return new CleanroomError('exec_lost', `the cleanroom daemon went away while the command was running in sandbox ${sandboxId}: its exit code is unknown`, {
    suggestions: [
      `A kept sandbox is still there, and the command may still run in it: cleanroom sandbox inspect ${sandboxId}`,
      `See why the daemon stopped in its log: ${join(stateDir(), 'daemon.log')}`,
    ],
  })
}
