import {execFile, type ExecFileException} from 'node:child_process'
import {stat} from 'node:fs/promises'

import {CleanroomError} from '../../../errors/index.js'

const GIT_TIMEOUT_MS = 30_000

/**
 * The paths under `workspace` that git ignores (`.env`, `node_modules/`, …), relative,
 * a directory once rather than each file in it: they are hidden from /workspace so the
 * sandbox sees tracked and untracked-not-ignored files only. Empty when git is not
 * installed or `workspace` is not in a repository; `.git` itself is never hidden.
 */
export async function ignoredPaths(workspace: string): Promise<string[]> {
  const owner = await stat(workspace)
  const asOwner = process.getuid?.() === 0 && owner.uid !== 0
  let listing: string
  try {
    listing = await git(workspace, ['ls-files', '-z', '--others', '--ignored', '--exclude-standard', '--directory'], asOwner ? owner : undefined)
  } catch (error) {
    const failure = error as ExecFileException & {stderr?: string}
    if (failure.code === 'ENOENT' || /not a git repository/i.test(failure.stderr ?? '')) return []
    // Failing open would show the files the repository means to keep private.
    throw new CleanroomError('backend_failed', `could not list the files git ignores in ${workspace}: ${(failure.stderr ?? failure.message).trim()}`, {cause: error})
  }
  return listing.split('\0').filter((path) => path !== '' && !path.split('/').includes('.git'))
}

/**
 * Runs git as the repository's owner when the daemon is root: git honours the
 * repository's own config (hooks like core.fsmonitor), which must never run as root.
 */
function git(cwd: string, args: string[], owner?: {uid: number; gid: number}): Promise<string> {
  const env: NodeJS.ProcessEnv = {PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C'}
  // The owner's own global ignores are not reachable under the daemon's HOME.
  if (!owner && process.env.HOME) env.HOME = process.env.HOME
  return new Promise((resolve, reject) => {
    execFile(
      'git',
      ['-c', 'core.fsmonitor=false', '-C', cwd, ...args],
      {env, timeout: GIT_TIMEOUT_MS, maxBuffer: 256 * 1024 * 1024, ...(owner ? {uid: owner.uid, gid: owner.gid} : {})},
      (error, stdout, stderr) => (error ? reject(Object.assign(error, {stderr})) : resolve(stdout)),
    )
  })
}
