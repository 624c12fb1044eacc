import {spawn} from 'node:child_process'
import {constants} from 'node:os'
import {PassThrough, Readable, Writable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import * as pty from '@lydell/node-pty'

import type {SandboxProcess} from '../../backend.js'
import type {ExitStatus} from '../../types.js'

const HEAD_BYTES = 512
const HEAD_WAIT_MS = 1000

/** A started process, and the first bytes it wrote (to tell nsinit's own failure line from the workload's output). */
export interface StartedProcess {
  process: SandboxProcess
  /** Once the process has exited: the start of its stderr (pipes) or of its terminal output. */
  head(): Promise<string>
}

/** A process with its stdin, stdout and stderr on pipes: bytes pass unchanged. */
export function spawnWithPipes(file: string, args: string[], env: Record<string, string>): StartedProcess {
  // Its own session: a process without a controlling tty cannot open (or inject into) the daemon's terminal.
  const child = spawn(file, args, {stdio: 'pipe', env, detached: true})
  const head = new OutputHead()
  const stderr = new PassThrough()
  child.stderr.on('data', head.note)
  child.stderr.pipe(stderr)
  const stderrEnded = new Promise((resolve) => child.stderr.once('close', resolve))
  // Writing to a process that has exited fails with EPIPE; its exit status tells the story.
  child.stdin.on('error', () => undefined)
  const exited = new Promise<ExitStatus>((resolve, reject) => {
    child.on('error', reject)
    child.once('exit', (code, signal) => resolve(signal ? killedBy(signal) : {exit_code: code ?? 0, signal: null}))
  })
  return {
    process: {
      stdin: child.stdin,
      stdout: child.stdout,
      stderr,
      resize: () => undefined,
      signal: (signal) => ignoreGone(() => child.kill(signal)),
      exited,
    },
    // 'exit' can come before the last of stderr; a background process may hold it open, hence the bound.
    head: async () => {
      await Promise.race([stderrEnded, sleep(HEAD_WAIT_MS)])
      return head.text()
    },
  }
}

/** A process on a fresh pseudo-terminal of `cols` x `rows`: stderr is merged into stdout. */
export function spawnOnTerminal(file: string, args: string[], env: Record<string, string>, size: {cols: number; rows: number}): StartedProcess {
  const terminal = pty.spawn(file, args, {name: env.TERM, cols: size.cols, rows: size.rows, cwd: '/', env, encoding: null})
  const head = new OutputHead()
  const stdout = new Readable({read: () => terminal.resume()})
  terminal.onData((data) => {
    // With `encoding: null` node-pty hands out Buffers, whatever its types say.
    const chunk = data as unknown as Buffer
    head.note(chunk)
    if (!stdout.push(chunk)) terminal.pause()
  })
  let running = true
  const exited = new Promise<ExitStatus>((resolve) => {
    terminal.onExit(({exitCode, signal}) => {
      running = false
      stdout.push(null)
      const name = signal ? signalName(signal) : undefined
      resolve(name ? killedBy(name) : {exit_code: exitCode, signal: null})
    })
  })
  const stdin = new Writable({
    write(chunk: Buffer, _encoding, done) {
      // node-pty's types say string; a Buffer is written to the pty unchanged. After the
      // exit the pty is closed, and input for it is dropped as with pipes.
      if (running) terminal.write(chunk as unknown as string)
      done()
    },
    // A terminal has no end of input to send: the workload reads ^D if the user types it.
    final: (done) => done(),
  })
  return {
    process: {
      stdin,
      stdout,
      stderr: null,
      resize: (cols, rows) => ignoreGone(() => running && terminal.resize(cols, rows)),
      // node-pty signals by pid even after the exit: never hit a recycled pid.
      signal: (signal) => ignoreGone(() => running && terminal.kill(signal)),
      exited,
    },
    // node-pty reports the exit only after the terminal's last output.
    head: async () => head.text(),
  }
}

function killedBy(signal: NodeJS.Signals): ExitStatus {
  return {exit_code: 128 + (constants.signals[signal] ?? 0), signal}
}

function signalName(number: number): NodeJS.Signals | undefined {
  return (Object.entries(constants.signals) as [NodeJS.Signals, number][]).find(([, value]) => value === number)?.[0]
}

/** Signalling or resizing a process that has just exited is not an error. */
function ignoreGone(action: () => unknown): void {
  try {
    action()
  } catch {
    // gone already
  }
}

/** The first bytes of a stream, kept to tell a helper's failure line from the workload's output. */
export class OutputHead {
  private bytes = Buffer.alloc(0)

  note = (chunk: Buffer): void => {
    if (this.bytes.length < HEAD_BYTES) this.bytes = Buffer.concat([this.bytes, chunk]).subarray(0, HEAD_BYTES)
  }

  text(): string {
    return this.bytes.toString('utf8')
  }
}
