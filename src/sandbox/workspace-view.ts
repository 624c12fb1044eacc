import {mkdir, readFile, stat, writeFile} from 'node:fs/promises'
import {isAbsolute, join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {readWorkspaceBase} from '../workspace/base.js'
import type {WorkspaceLayers} from './backend.js'
import {GIT_CONFIG_PATH, gitConfigHolds, redactedGitConfigOf} from './git-config.js'
import {STATE_LAYOUT} from './layout.js'

/*
 * How /workspace is made, whatever the backend: an overlay whose lower layer is the
 * workspace (nsinit create mounts it), whose upper layer is `<state>/upper`, with a
 * whiteout for each ignored path and the redacted .git/config put in upper. These
 * are the files the daemon writes for nsinit, and how `workspace diff` finds them again.
 */

/** Where a sandbox's changes are, from its state dir: its upper layer and what the backend put there itself. */
export async function readWorkspaceLayers(state: string): Promise<WorkspaceLayers> {
  const upper = join(state, 'upper')
  const [hidden, gitConfig, base] = await Promise.all([
    readFile(join(state, STATE_LAYOUT.whiteouts), 'utf8').then((text) => text.split('\0').filter(Boolean), () => []),
    readFile(join(state, STATE_LAYOUT.gitConfig)).catch(() => undefined),
    readWorkspaceBase(state),
  ])
  const untouched = gitConfig !== undefined && (await gitConfigHolds(upper, gitConfig))
  return {upper, hidden, provided: untouched ? [GIT_CONFIG_PATH] : [], ...(base ? {base} : {})}
}

export async function requireDirectory(path: string): Promise<void> {
  const stats = isAbsolute(path) ? await stat(path).catch(() => undefined) : undefined
  if (!stats?.isDirectory()) throw new CleanroomError('bad_request', `${path}: the workspace must be an existing directory given by its absolute path`)
}

export async function emptyWorkspace(state: string): Promise<string> {
  const dir = join(state, STATE_LAYOUT.emptyWorkspace)
  await mkdir(dir, {mode: 0o755})
  return dir
}

/** Writes the paths to hide, NUL-separated, for nsinit's --whiteout-file; none: no file. */
export async function writeWhiteouts(state: string, paths: string[]): Promise<string | undefined> {
  if (paths.length === 0) return undefined
  const file = join(state, STATE_LAYOUT.whiteouts)
  await writeFile(file, paths.map((path) => `${path}\0`).join(''), {mode: 0o600})
  return file
}

/** The redacted .git/config for nsinit --git-config, when the workspace's own holds something to redact. */
export async function writeRedactedGitConfig(state: string, workspace: string): Promise<string | undefined> {
  const redacted = await redactedGitConfigOf(workspace)
  if (redacted === undefined) return undefined
  const file = join(state, STATE_LAYOUT.gitConfig)
  await writeFile(file, redacted, {mode: 0o600})
  return file
}

/**
 * Promise.all that waits for every step before rejecting: the caller removes the
 * state dir on failure, and no step may still be writing into it then.
 */
export async function settleAll<T extends readonly unknown[]>(steps: {[K in keyof T]: Promise<T[K]>}): Promise<T> {
  const results = await Promise.allSettled(steps)
  const failed = results.find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
  return results.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T
}
