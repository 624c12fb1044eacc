import {constants} from 'node:os'
import {PassThrough, type Readable, type Writable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

import {CleanroomError, messageOf} from '../../../errors/index.js'
import type {SandboxProcess} from '../../backend.js'
import {SANDBOX_USER} from '../../layout.js'
import type {ExecRequest, ExitStatus} from '../../types.js'
import {OutputHead} from '../linux-ns/process.js'
import {GUEST, processSpec} from './bundle.js'
import {parseStatus, resolveCommand, sandboxGone, statusLine, unusableWorkingDirectory} from './exec-status.js'
import {CONTAINER_ID, processFile, rootFlags, spawnRunsc} from './runsc.js'
import {type GvisorRuntime, isSandboxAlive} from './runtime.js'

const DEFAULT_SIZE = {cols: 80, rows: 24}
const HEAD_WAIT_MS = 1000
/** nsinit's own failures: exit 125 with a `nsinit: ` line (guest-run.c). */
const NSINIT_SETUP_FAILED = 125

/** The fds of `runsc exec`: the process spec, and the two it passes to `nsinit run` as 3 and 4. */
const SPEC_FD = 3
const STATUS_FD = 4
const CONTROL_FD = 5

/**
 * Starts `request.argv` in the sandbox: `runsc exec` of `nsinit run`, as the sandbox
 * user (on an image: its User, with its Env), with the process spec (environment
 * included) read from an unlinked file on fd 3, never from runsc's command line.
 * The helper reports the command's end on a status pipe and takes signals and
 * terminal sizes on a control pipe; with a TTY it makes the terminal inside the
 * sandbox (runsc exec cannot).
 */
export async function startExec(runsc: string, runtime: GvisorRuntime, request: ExecRequest): Promise<SandboxProcess> {
  const command = resolveCommand(runtime, request)
  const cwd = command.cwd
  const size = {cols: request.cols ?? DEFAULT_SIZE.cols, rows: request.rows ?? DEFAULT_SIZE.rows}
  const args = [GUEST.nsinit, 'run', '--status-fd', '3', '--control-fd', '4', ...(request.tty ? ['--tty', String(size.cols), String(size.rows)] : []), '--cwd', cwd, '--', ...command.argv]
  const workload = processSpec({uid: runtime.image?.uid ?? SANDBOX_USER.uid, gid: runtime.image?.gid ?? SANDBOX_USER.gid, args, env: command.env})
  const [alive, spec] = await Promise.all([isSandboxAlive(runtime), processFile(runtime.state_dir, workload)])
  if (!alive) {
    await spec.close()
    throw sandboxGone()
  }
  const argv = [...rootFlags(runtime), 'exec', '--process', `/dev/fd/${SPEC_FD}`, '--pass-fd', `${STATUS_FD}:3`, '--pass-fd', `${CONTROL_FD}:4`, CONTAINER_ID]
  let child
  try {
    child = spawnRunsc(runsc, argv, ['pipe', 'pipe', 'pipe', spec.fd, 'pipe', 'pipe'])
  } catch (error) {
    throw new CleanroomError('backend_failed', `could not start ${runsc}: ${messageOf(error)}`, {cause: error})
  } finally {
    await spec.close()
  }
  // Node's types know five stdio streams; the control pipe is the sixth.
  const pipes = child.stdio as unknown as Array<Readable | Writable | null>
  const status = statusLine(pipes[STATUS_FD] as Readable, STATUS_BYTES)
  const control = pipes[CONTROL_FD] as Writable
  // Writing to a helper that has ended fails with EPIPE: its status tells the story.
  control.on('error', () => undefined)
  child.stdin!.on('error', () => undefined)
  const tell = (line: string) => {
    if (!control.destroyed && control.writable) control.write(`${line}\n`)
  }
  // runsc's own complaints arrive on its stderr: the workload's with pipes, a stream of their own with a terminal.
  const head = new OutputHead()
  const stderr = new PassThrough()
  child.stderr!.on('data', head.note)
  if (request.tty) child.stderr!.resume()
  else child.stderr!.pipe(stderr)
  const stderrClosed = new Promise((resolve) => child.stderr!.once('close', resolve))
  const exited = new Promise<ExitStatus>((resolve, reject) => {
    child.once('error', (error) => reject(new CleanroomError('backend_failed', `could not run ${runsc}: ${messageOf(error)}`, {cause: error})))
    child.once('exit', (code) => {
      control.destroy()
      void status.then(async (line) => {
        const reported = parseStatus(line)
        if (reported) return resolve(reported)
        // A failure's words may trail the exit; a process left holding stderr must not hold this up.
        await Promise.race([stderrClosed, sleep(HEAD_WAIT_MS)])
        reject(await execFailure(runtime, code, head.text(), cwd))
      })
    })
  })
  return {
    stdin: child.stdin!,
    stdout: child.stdout!,
    stderr: request.tty ? null : stderr,
    resize: (cols, rows) => request.tty && tell(`size ${cols} ${rows}`),
    signal: (signal) => tell(`signal ${constants.signals[signal] ?? 0}`),
    exited,
  }
}

/** Why an exec ended without its command's status: the helper's own failure, the sandbox gone, or runsc's. */
async function execFailure(runtime: GvisorRuntime, code: number | null, stderrHead: string, cwd: string): Promise<CleanroomError> {
  if (!(await isSandboxAlive(runtime))) return sandboxGone()
  const line = stderrHead.split(/\r?\n/).find((text) => text.startsWith('nsinit: '))
  if (code === NSINIT_SETUP_FAILED && line?.startsWith('nsinit: chdir ')) {
    return unusableWorkingDirectory(cwd, line.slice(line.lastIndexOf(': ') + 2))
  }
  const said = line ?? stderrHead.trim().split('\n')[0] ?? ''
  return new CleanroomError('backend_failed', `could not run the command in the sandbox (runsc exec exited ${code}): ${said}`)
}

/** What `nsinit run` reports is one short line: more is not read into memory (the workload can reach that socket). */
const STATUS_BYTES = 64
