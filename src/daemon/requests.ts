import {isAbsolute} from 'node:path'

import {BACKENDS, type BackendName} from '../config/schema.js'
import {recompilePolicy, withAdditionalAllow, withImage} from '../policy/compile.js'
import {loadPolicy} from '../policy/load.js'
import type {AllowRuleInput, CompiledPolicy} from '../policy/schema.js'
import type {ExecRequest} from '../sandbox/types.js'
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
 * (digest-pinned: the CLI resolves a tag first) replaces the policy's image.
 */
export async function parseSandboxSource(body: Record<string, unknown>): Promise<SandboxSource> {
  const extra = body.extra_allow === undefined ? [] : parseAllowRules(body.extra_allow)
  let source: SandboxSource
  if (body.repository !== undefined) {
    if (body.policy !== undefined || body.workspace_source !== undefined) throw badRequest('give either repository, or policy and workspace_source')
    const dir = absolutePath('repository', body.repository)
    const {source: policySource, policy} = await loadPolicy(dir)
    source = {policy, policySource, workspaceSource: (await findGitRoot(dir)) ?? dir}
  } else {
    const workspace = body.workspace_source
    if (workspace !== undefined && workspace !== null) absolutePath('workspace_source', workspace)
    source = {policy: recompilePolicy(body.policy), policySource: null, workspaceSource: (workspace as string | null | undefined) ?? null}
  }
  if (body.image !== undefined) {
    if (typeof body.image !== 'string') throw badRequest('image must be a digest-pinned image reference (registry/repository@sha256:…)')
    source = {...source, policy: withImage(source.policy, body.image)}
  }
  return extra.length > 0 ? {...source, policy: withAdditionalAllow(source.policy, extra)} : source
}

function absolutePath(name: string, value: unknown): string {
  if (typeof value !== 'string' || !value.startsWith('/') || value.includes('\0')) throw badRequest(`${name} must be an absolute host path`)
  return value
}

function parseAllowRules(value: unknown): AllowRuleInput[] {
  const valid = (rule: unknown): rule is AllowRuleInput => {
    if (typeof rule !== 'object' || rule === null) return false
    const {host, ports, reason} = rule as Record<string, unknown>
    return typeof host === 'string' && Array.isArray(ports) && ports.every((port) => typeof port === 'number') && (reason === undefined || typeof reason === 'string')
  }
  if (!Array.isArray(value) || !value.every(valid)) throw badRequest('extra_allow must be an array of {host, ports, reason?}')
  return value
}
