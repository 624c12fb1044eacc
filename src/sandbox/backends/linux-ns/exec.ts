import {CleanroomError, messageOf} from '../../../errors/index.js'
import type {SandboxProcess} from '../../backend.js'
import type {ExecRequest} from '../../types.js'
import {execArgv, NSINIT_SETUP_FAILED} from './nsinit.js'
import {spawnOnTerminal, spawnWithPipes, type StartedProcess} from './process.js'
import {WORKSPACE, workloadEnv} from '../../layout.js'
import {execTarget, isSandboxAlive, type LinuxNsRuntime} from './runtime.js'

const DEFAULT_SIZE = {cols: 80, rows: 24}

/** Starts `request.argv` in the sandbox through `nsinit exec`, as the sandbox user, with a clean environment. */
export async function startExec(nsinit: string, runtime: LinuxNsRuntime, request: ExecRequest): Promise<SandboxProcess> {
  if (request.argv.length === 0) throw new CleanroomError('bad_request', 'nothing to run: the command is empty')
  if (!(await isSandboxAlive(runtime))) throw initGone()
  const cwd = request.cwd ?? runtime.image?.cwd ?? WORKSPACE
  const args = execArgv(execTarget(runtime), cwd, request.argv)
  const env = workloadEnv(request, runtime.image)
  let started: StartedProcess
  try {
    started = request.tty
      ? spawnOnTerminal(nsinit, args, env, {cols: request.cols ?? DEFAULT_SIZE.cols, rows: request.rows ?? DEFAULT_SIZE.rows})
      : spawnWithPipes(nsinit, args, env)
  } catch (error) {
    throw new CleanroomError('backend_failed', `could not start ${nsinit}: ${messageOf(error)}`, {cause: error})
  }
  const running = started.process
  return {
    stdin: running.stdin,
    stdout: running.stdout,
    stderr: running.stderr,
    resize: running.resize,
    signal: running.signal,
    exited: running.exited.then(
      async (status) => {
        const helperLine = status.exit_code === NSINIT_SETUP_FAILED ? nsinitLine(await started.head()) : undefined
        if (helperLine) throw await setupFailure(helperLine, runtime, cwd)
        return status
      },
      (error: unknown) => {
        throw new CleanroomError('backend_failed', `could not run ${nsinit}: ${messageOf(error)}`, {cause: error})
      },
    ),
  }
}

/** nsinit's own failure is exit 125 with output that starts with its `nsinit: ` line. */
function nsinitLine(head: string): string | undefined {
  const line = head.replace(/^\r?\n/, '').split(/\r?\n/)[0]
  return line?.startsWith('nsinit: ') ? line : undefined
}

async function setupFailure(line: string, runtime: LinuxNsRuntime, cwd: string): Promise<CleanroomError> {
  if (!(await isSandboxAlive(runtime))) return initGone()
  if (line.startsWith('nsinit: chdir ')) {
    return new CleanroomError('bad_request', `${cwd}: cannot be the working directory in the sandbox (${line.slice(line.lastIndexOf(': ') + 2)})`)
  }
  return new CleanroomError('backend_failed', `could not enter the sandbox: ${line}`)
}

function initGone(): CleanroomError {
  return new CleanroomError('sandbox_failed', 'the sandbox is gone: its init process exited')
}
