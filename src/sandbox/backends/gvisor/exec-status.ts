import {constants} from 'node:os'

import {CleanroomError} from '../../../errors/index.js'
import type {ExitStatus} from '../../types.js'

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
