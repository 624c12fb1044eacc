import {constants} from 'node:os'
import type {Readable} from 'node:stream'

import {CleanroomError} from '../../../errors/index.js'
import {WORKSPACE, workloadEnv} from '../../layout.js'
import type {ExecRequest, ExitStatus} from '../../types.js'
import type {GvisorRuntime} from './runtime.js'

/** What both ways of running an exec (runsc exec of `nsinit run`, the exec server) share. */

/** A command as it runs inside: its words, the workload's environment (an image's Env under the request's), its working directory. */
export interface ResolvedCommand {
  argv: string[]
  env: Record<string, string>
  cwd: string
}

export function resolveCommand(runtime: Pick<GvisorRuntime, 'image'>, request: ExecRequest): ResolvedCommand {
  if (request.argv.length === 0) throw new CleanroomError('bad_request', 'nothing to run: the command is empty')
  return {argv: request.argv, env: workloadEnv(request, runtime.image), cwd: request.cwd ?? runtime.image?.cwd ?? WORKSPACE}
}

/** The first `limit` characters `stream` sends before it closes: a status line, which the workload might try to make long. */
export function statusLine(stream: Readable, limit: number): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    stream.on('data', (chunk: Buffer) => {
      if (text.length < limit) text = (text + chunk.toString('utf8')).slice(0, limit)
    })
    stream.once('close', () => resolve(text))
    stream.once('error', () => resolve(text))
    stream.resume()
  })
}

/** "exit <code>" or "signal <n>", as `nsinit run` and the exec server report a command's end. */
export function parseStatus(line: string): ExitStatus | undefined {
  const match = /^(exit|signal) (\d+)\n?$/.exec(line)
  if (!match) return undefined
  const number = Number(match[2])
  if (match[1] === 'exit') return {exit_code: number, signal: null}
  const name = (Object.entries(constants.signals) as [NodeJS.Signals, number][]).find(([, value]) => value === number)?.[0] ?? null
  return {exit_code: 128 + number, signal: name}
}

export function sandboxGone(): CleanroomError {
  return new CleanroomError('sandbox_failed', 'the sandbox is gone: its gVisor kernel or its runsc exited')
}

/** The working directory asked for could not be entered inside: nothing ran. */
export function unusableWorkingDirectory(cwd: string, why: string): CleanroomError {
  return new CleanroomError('bad_request', `${cwd}: cannot be the working directory in the sandbox (${why})`)
}
