import {isAbsolute} from 'node:path'

import {BACKENDS, type BackendName} from '../config/schema.js'
import type {ExecRequest} from '../sandbox/types.js'
import {isEnvName} from '../util/env-name.js'
import {badRequest} from './http.js'

/** Checks an execution request from a client; every field is validated, nothing is trusted. */
export function parseExecRequest(body: Record<string, unknown>): ExecRequest {
  const {argv, env = {}, tty = false, cols, rows, cwd} = body
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((arg) => typeof arg === 'string')) {
    throw badRequest('argv must be a non-empty array of strings')
  }
  if (argv.some((arg: string) => arg.includes('\0'))) throw badRequest('argv must not contain NUL bytes')
  if (typeof env !== 'object' || env === null || Array.isArray(env)) throw badRequest('env must be an object of strings')
  for (const [name, value] of Object.entries(env)) {
    if (!isEnvName(name)) throw badRequest(`env name ${JSON.stringify(name)} is not a valid variable name`)
    if (typeof value !== 'string' || value.includes('\0')) throw badRequest(`env ${name} must be a string without NUL`)
  }
  if (typeof tty !== 'boolean') throw badRequest('tty must be true or false')
  const request: ExecRequest = {argv: argv as string[], env: env as Record<string, string>, tty}
  if (cols !== undefined) request.cols = terminalSize('cols', cols)
  if (rows !== undefined) request.rows = terminalSize('rows', rows)
  if (cwd !== undefined) {
    if (typeof cwd !== 'string' || !isAbsolute(cwd) || cwd.includes('\0')) throw badRequest('cwd must be an absolute path')
    request.cwd = cwd
  }
  return request
}

const MAX_TERMINAL_SIZE = 10_000

/** A terminal's columns or rows as a client may give them. */
export function isTerminalSize(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_TERMINAL_SIZE
}

export function terminalSize(name: string, value: unknown): number {
  if (!isTerminalSize(value)) throw badRequest(`${name} must be an integer from 1 to ${MAX_TERMINAL_SIZE}`)
  return value
}

export function parseBackendName(value: unknown, fallback: BackendName): BackendName {
  if (value === undefined || value === null) return fallback
  if (typeof value === 'string' && (BACKENDS as readonly string[]).includes(value)) return value as BackendName
  throw badRequest(`backend must be one of: ${BACKENDS.join(', ')}`)
}

/** An absolute path inside the sandbox, from a query parameter. */
export function parseSandboxPath(value: string | null): string {
  if (value === null || !isAbsolute(value) || value.includes('\0')) throw badRequest('path must be an absolute path inside the sandbox')
  return value
}
