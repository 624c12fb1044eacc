import type {Duplex, Readable} from 'node:stream'

import {messageOf} from '../errors/index.js'
import type {SandboxProcess} from '../sandbox/backend.js'
import {type Frame, FrameDecoder, FrameType, encodeJsonFrame, framesOf} from './protocol.js'
import {isTerminalSize} from './requests.js'

const SIGNALS = new Set<string>(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGKILL', 'SIGUSR1', 'SIGUSR2', 'SIGWINCH'])

/**
 * Joins an upgraded connection to a process in a sandbox: its output goes out
 * as frames, the client's frames become stdin, resizes and signals. The exit
 * frame is sent only after every byte of output. A client that goes away before
 * the process exits (or ends its side of the connection: stdin's end is a frame)
 * detaches (the process keeps running with stdin closed), and `onClientGone` hears it.
 */
export function attachProcess(socket: Duplex, process: SandboxProcess, onClientGone: () => void = () => undefined): void {
  let detached = false
  let exited = false
  socket.on('error', () => undefined)
  // The server keeps half-open connections: a client that is gone (killed) only shows as the end of its input.
  socket.on('end', () => socket.destroy())
  socket.on('close', () => {
    detached = true
    process.stdin.end()
    if (!exited) onClientGone()
  })
  void process.exited.then(
    () => {
      exited = true
    },
    () => {
      exited = true
    },
  )

  const forward = (stream: Readable | null, type: number): Promise<void> =>
    new Promise((resolve) => {
      if (!stream) {
        resolve()
        return
      }
      stream.on('data', (chunk: Buffer) => {
        if (detached) return
        let flushed = true
        for (const frame of framesOf(type, chunk)) flushed = socket.write(frame) && flushed
        if (!flushed) {
          stream.pause()
          socket.once('drain', () => stream.resume())
        }
      })
      stream.once('end', resolve)
      stream.once('close', resolve)
      stream.once('error', () => resolve())
    })

  const output = Promise.all([forward(process.stdout, FrameType.stdout), forward(process.stderr, FrameType.stderr)])

  const decoder = new FrameDecoder()
  socket.pipe(decoder)
  decoder.on('error', () => socket.destroy())
  decoder.on('data', (frame: Frame) => handleClientFrame(frame, process))
  process.stdin.on('error', () => undefined)

  void (async () => {
    let last: Buffer
    try {
      const status = await process.exited
      await output
      last = encodeJsonFrame(FrameType.exit, status)
    } catch (error) {
      last = encodeJsonFrame(FrameType.error, {code: 'backend_failed', message: messageOf(error)})
    }
    if (!detached) socket.end(last)
  })()
}

function handleClientFrame(frame: Frame, process: SandboxProcess): void {
  switch (frame.type) {
    case FrameType.stdin: {
      process.stdin.write(frame.payload)
      break
    }
    case FrameType.stdinEof: {
      process.stdin.end()
      break
    }
    case FrameType.resize: {
      const size = parseJson(frame.payload) as {cols?: unknown; rows?: unknown} | undefined
      if (isTerminalSize(size?.cols) && isTerminalSize(size?.rows)) process.resize(size.cols, size.rows)
      break
    }
    case FrameType.signal: {
      const signal = (parseJson(frame.payload) as {signal?: unknown} | undefined)?.signal
      if (typeof signal === 'string' && SIGNALS.has(signal)) process.signal(signal as NodeJS.Signals)
      break
    }
    default: {
      break
    }
  }
}

function parseJson(payload: Buffer): unknown {
  try {
    return JSON.parse(payload.toString('utf8'))
  } catch {
    return undefined
  }
}
