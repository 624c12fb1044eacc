import {posix} from 'node:path'

import {CleanroomError} from '../errors/index.js'

/*
 * Where a credential mapping may read on the host and write in the sandbox. Apart from
 * the packing (credentials.ts), which needs the tar writer: the config's and the
 * plugins' validation import these, and every CLI command loads the config.
 */

/** The sandbox user's home, where `~` in a credential target points. */
export const SANDBOX_HOME = '/home/cleanroom'

const TARGET_RULE = 'a credential target must be ~/…, a path relative to the sandbox home, or an absolute path inside it'

/** Why a credential source is unusable, or undefined when it is fine. Sources are `~/…` (the host home) or absolute. */
export function validateCredentialSource(source: string): string | undefined {
  const quoted = JSON.stringify(source)
  if (source.trim() === '') return 'is empty: give the host path to copy, e.g. ~/.codex/auth.json'
  if (source.includes('\0')) return `${quoted} contains a NUL byte`
  const trimmed = source.trim()
  if (/^~[^/]/.test(trimmed)) return `${quoted} uses a ~user form; write ~/… (your home) or an absolute path`
  if (!trimmed.startsWith('/') && !trimmed.startsWith('~')) return `${quoted} must be ~/… (your home) or an absolute path`
  if (trimmed.split('/').includes('..')) return `${quoted} must not contain ".." segments`
  return undefined
}

/** Why a credential target is unusable, or undefined when it is fine. */
export function validateCredentialTarget(target: string, sandboxHome: string = SANDBOX_HOME): string | undefined {
  const resolved = resolveTarget(target, sandboxHome)
  return 'problem' in resolved ? resolved.problem : undefined
}

/**
 * A credential target as a path relative to the sandbox user's home, the form the
 * archive's entry names take (`~/.codex/auth.json` → `.codex/auth.json`). Throws
 * `credential_target_invalid` for a target that is empty, the home itself, a `~user`
 * form, contains NUL, or leaves the home (`..`, an absolute path elsewhere).
 */
export function normalizeCredentialTarget(target: string, sandboxHome: string = SANDBOX_HOME): string {
  const resolved = resolveTarget(target, sandboxHome)
  if ('problem' in resolved) {
    throw new CleanroomError('credential_target_invalid', resolved.problem, {
      suggestions: [`Use a path such as ~/.codex/auth.json; ${TARGET_RULE} (${sandboxHome}).`],
    })
  }
  return resolved.relative
}

function resolveTarget(target: string, sandboxHome: string): {relative: string} | {problem: string} {
  const quoted = JSON.stringify(target)
  const trimmed = target.trim()
  if (trimmed.includes('\0')) return {problem: `credential target ${quoted} contains a NUL byte`}
  if (trimmed === '') return {problem: `credential target is empty; ${TARGET_RULE}`}
  if (/^~[^/]/.test(trimmed)) return {problem: `credential target ${quoted} uses a ~user form; ${TARGET_RULE}`}

  let relative: string
  if (trimmed === '~' || trimmed.startsWith('~/')) relative = trimmed.slice(2)
  else if (trimmed.startsWith('/')) relative = posix.relative(sandboxHome, trimmed)
  else relative = trimmed

  relative = posix.normalize(relative === '' ? '.' : relative).replace(/\/+$/, '')
  if (relative === '.' || relative === '') return {problem: `credential target ${quoted} is the sandbox home itself; name a file or directory inside it`}
  if (relative === '..' || relative.startsWith('../') || posix.isAbsolute(relative)) {
    return {problem: `credential target ${quoted} is outside the sandbox home ${sandboxHome}; ${TARGET_RULE}`}
  }
  return {relative}
}
