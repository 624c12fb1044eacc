import {isAbsolute} from 'node:path'

import {BACKENDS, type BackendName} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {DEFAULT_POLICY, withImage} from '../policy/compile.js'
import {loadPolicy} from '../policy/load.js'
import {policyWorker} from '../policy/policy-worker.js'
import type {AllowRuleInput, CompiledPolicy} from '../policy/schema.js'
import type {ExecRequest} from '../sandbox/types.js'
import {FILE_LIMITS} from '../util/file-limits.js'
import {findGitRoot} from '../util/repo.js'
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

/** What a new sandbox is made from, once a create request has been checked. */
export interface SandboxSource {
  policy: CompiledPolicy
  /** The policy file used, or null: the built-in default (or a compiled policy the client sent). */
  policySource: string | null
  workspaceSource: string | null
}

/**
 * The policy and workspace of `POST /v1/sandboxes`, given one of two ways:
 * `repository` (an absolute directory: the policy is found and compiled here,
 * from that directory up to its git root, and the git root becomes the
 * workspace), or `policy` (compiled, re-checked here) with `workspace_source`.
 * `extra_allow` adds allow rules to either (an agent's network needs); `image`
 * (digest-pinned: the CLI resolves a tag first) replaces the policy's image. The
 * files are found and read here; parsing and compiling happen in the policy
 * worker, so no policy, however large or hostile, holds up the event loop.
 */
export async function parseSandboxSource(body: Record<string, unknown>): Promise<SandboxSource> {
  const source = await readSandboxSource(body)
  if (body.image === undefined) return source
  if (typeof body.image !== 'string') throw badRequest('image must be a digest-pinned image reference (registry/repository@sha256:…)')
  return {...source, policy: withImage(source.policy, body.image)}
}

async function readSandboxSource(body: Record<string, unknown>): Promise<SandboxSource> {
  const extra = body.extra_allow === undefined ? [] : parseAllowRules(body.extra_allow, 'extra_allow')
  if (body.repository !== undefined) {
    if (body.policy !== undefined || body.workspace_source !== undefined) throw badRequest('give either repository, or policy and workspace_source')
    const dir = absolutePath('repository', body.repository)
    const [loaded, gitRoot] = await Promise.all([loadPolicy(dir, (display, bytes) => policyWorker.compileFile(display, bytes, extra)), findGitRoot(dir)])
    // No policy file: the default, which the worker only needs to see when rules are added to it.
    const policy = loaded.source === null && extra.length > 0 ? await policyWorker.recompile(DEFAULT_POLICY, extra) : loaded.policy
    return {policy, policySource: loaded.source, workspaceSource: gitRoot ?? dir}
  }
  const workspace = body.workspace_source
  if (workspace !== undefined && workspace !== null) absolutePath('workspace_source', workspace)
  // Handing a value to the worker copies it on the event loop: a compiled policy gets the values limit of a policy file first.
  if (holdsMoreThan(body.policy, FILE_LIMITS.maxValues)) {
    throw new CleanroomError('policy_invalid', `policy holds more than ${FILE_LIMITS.maxValues} values: a policy may have at most ${FILE_LIMITS.maxValues}`)
  }
  return {policy: await policyWorker.recompile(body.policy, extra), policySource: null, workspaceSource: (workspace as string | null | undefined) ?? null}
}

/** Whether a JSON value holds more than `max` values (objects, arrays and scalars); walks at most `max` of them. */
function holdsMoreThan(value: unknown, max: number): boolean {
  const pending: unknown[] = [value]
  let seen = 0
  while (pending.length > 0) {
    const next = pending.pop()
    seen++
    const children = Array.isArray(next) ? next : typeof next === 'object' && next !== null ? Object.values(next) : []
    if (seen + pending.length + children.length > max) return true
    for (const child of children) pending.push(child)
  }
  return false
}

/** Starts the policy worker before the first create needs it. */
export function startPolicyWorker(): void {
  policyWorker.start()
}

function absolutePath(name: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) throw badRequest(`${name} must be an absolute host path`)
  return value
}

/** How many rules `extra_allow` may add: an agent declares at most 256 (AGENT_SPEC_LIMITS). */
const MAX_EXTRA_ALLOW = 256

export function parseAllowRules(value: unknown, field: string): AllowRuleInput[] {
  const valid = (rule: unknown): rule is AllowRuleInput => {
    if (typeof rule !== 'object' || rule === null) return false
    const {host, ports, reason} = rule as Record<string, unknown>
    return typeof host === 'string' && Array.isArray(ports) && ports.length <= 64 && ports.every((port) => typeof port === 'number') && (reason === undefined || typeof reason === 'string')
  }
  if (!Array.isArray(value) || value.length > MAX_EXTRA_ALLOW || !value.every(valid)) throw badRequest(`${field} must be an array of at most ${MAX_EXTRA_ALLOW} {host, ports (at most 64), reason?}`)
  return value
}
