import type {ExecFileException} from 'node:child_process'
import {lstat, readFile, stat} from 'node:fs/promises'
import {isAbsolute, join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {type GitConfigScope, runGit} from '../util/git.js'

const GIT_TIMEOUT_MS = 30_000
/** Repositories inside repositories inside…: deeper than this, a repository is hidden whole. */
const MAX_NESTING = 8
const GITLINK_MODE = '160000'

/** What a sandbox of a workspace hides: the paths git ignores, in the repository and in every one nested in it. */
export interface IgnoredListing {
  /** Relative to the workspace; a directory once, as `dir/`; never a `.git` path. */
  paths: string[]
  /** Nested repositories and initialised submodules whose own ignore rules were applied. */
  nested: string[]
  /** Nested repositories git could not list (another owner, a broken one): hidden whole (their `dir/` is in `paths`). */
  unlisted: Array<{path: string; why: string}>
}

/**
 * The paths under `workspace` git ignores (`.env`, `node_modules/`, …), for the
 * sandbox to see tracked and untracked-not-ignored files only: the repository's own
 * rules, `.git/info/exclude` and the owner's global excludes (`core.excludesFile`,
 * else `$XDG_CONFIG_HOME/git/ignore` or `~/.config/git/ignore`), and, for every nested
 * repository and initialised submodule, the rules git applies there. Empty when git is
 * not installed or `workspace` is not in a repository. One pass of git over each
 * repository: nothing is read or hashed per file.
 *
 * A root process runs git as the workspace's owner (a repository's config can run
 * commands, which must never run as root), with the owner's home from the password
 * database; otherwise git gets this process's HOME and XDG_CONFIG_HOME (for the
 * daemon the CLI starts, the CLI user's).
 */
export async function listIgnored(workspace: string, env: NodeJS.ProcessEnv = process.env): Promise<IgnoredListing> {
  const owner = await stat(workspace)
  const git = await gitAs(owner, env)
  const listing: IgnoredListing = {paths: [], nested: [], unlisted: []}
  try {
    await listRepository(git, workspace, '', 0, listing)
  } catch (error) {
    const failure = error as ExecFileException & {stderr?: string}
    if (failure.code === 'ENOENT' || /not a git repository/i.test(failure.stderr ?? '')) return {paths: [], nested: [], unlisted: []}
    // Failing open would show the files the repository means to keep private.
    throw new CleanroomError('backend_failed', `could not list the files git ignores in ${workspace}: ${(failure.stderr ?? failure.message).trim()}`, {cause: error})
  }
  listing.paths.sort()
  listing.nested.sort()
  return listing
}

type Git = (cwd: string, args: string[]) => Promise<string>

async function listRepository(git: Git, root: string, prefix: string, depth: number, listing: IgnoredListing): Promise<void> {
  const dir = join(root, prefix)
  const [ignored, others] = await Promise.all([
    git(dir, ['ls-files', '-z', '--others', '--ignored', '--exclude-standard', '--directory']),
    // Untracked entries ("? path"; a nested repository ends in "/") and the index ("H 160000 <oid> 0\tpath" for a submodule).
    git(dir, ['ls-files', '-z', '-t', '--others', '--stage', '--exclude-standard']),
  ])
  const hidden = ignored.split('\0').filter((path) => path !== '' && !path.split('/').includes('.git'))
  listing.paths.push(...hidden.map((path) => prefix + path))

  const isHidden = (path: string) => hidden.some((h) => h === path || (h.endsWith('/') && path.startsWith(h)))
  const inner = new Set<string>()
  for (const entry of others.split('\0')) {
    if (entry.startsWith('? ')) {
      if (entry.endsWith('/')) inner.add(entry.slice(2, -1))
      continue
    }
    const tab = entry.indexOf('\t')
    if (tab !== -1 && entry.slice(2, tab).split(' ')[0] === GITLINK_MODE) inner.add(entry.slice(tab + 1))
  }
  const repositories = [...inner].filter((path) => isRelativeInside(path) && !isHidden(path) && !isHidden(`${path}/`))
  await Promise.all(
    repositories.map(async (path) => {
      const nestedPrefix = `${prefix}${path}/`
      // A submodule that was never initialised is an empty directory: nothing to list.
      if (!(await lstat(join(root, nestedPrefix, '.git')).catch(() => undefined))) return
      if (depth + 1 >= MAX_NESTING) {
        hideWhole(listing, nestedPrefix, `nested more than ${MAX_NESTING} repositories deep`)
        return
      }
      try {
        await listRepository(git, root, nestedPrefix, depth + 1, listing)
        listing.nested.push(prefix + path)
      } catch (error) {
        const failure = error as ExecFileException & {stderr?: string}
        hideWhole(listing, nestedPrefix, (failure.stderr ?? failure.message).trim().split('\n')[0] ?? 'git failed')
      }
    }),
  )
}

function hideWhole(listing: IgnoredListing, dirPath: string, why: string): void {
  listing.paths.push(dirPath)
  listing.unlisted.push({path: dirPath.slice(0, -1), why})
}

function isRelativeInside(path: string): boolean {
  return path !== '' && !isAbsolute(path) && path.split('/').every((part) => part !== '' && part !== '.' && part !== '..' && part !== '.git')
}

/**
 * Runs git as the workspace's owner when this process is root (git honours the
 * repository's own config, which must never run anything as root), with the
 * owner's global and system config (where their global ignore rules are), and
 * the rest of the environment left out.
 */
async function gitAs(owner: {uid: number; gid: number}, env: NodeJS.ProcessEnv): Promise<Git> {
  const asOwner = process.getuid?.() === 0 && owner.uid !== 0
  const config: GitConfigScope = asOwner
    ? {scope: 'user', home: await homeOf(owner.uid)}
    : {scope: 'user', ...(env.HOME && isAbsolute(env.HOME) ? {home: env.HOME} : {}), ...(env.XDG_CONFIG_HOME && isAbsolute(env.XDG_CONFIG_HOME) ? {xdgConfigHome: env.XDG_CONFIG_HOME} : {})}
  return async (cwd, args) => {
    const result = await runGit(cwd, args, {config, timeoutMs: GIT_TIMEOUT_MS, ...(asOwner ? {user: {uid: owner.uid, gid: owner.gid}} : {})})
    if (result.code !== 0) throw Object.assign(new Error(`git ${args[0]} exited with ${result.code ?? 'a signal'}`), {stderr: result.stderr})
    return result.stdout.toString('utf8')
  }
}

/** A user's home directory from /etc/passwd (the daemon's view; NSS-only accounts have none here). */
async function homeOf(uid: number): Promise<string | undefined> {
  const passwd = await readFile('/etc/passwd', 'utf8').catch(() => '')
  for (const line of passwd.split('\n')) {
    const fields = line.split(':')
    if (fields.length >= 7 && fields[2] === String(uid) && isAbsolute(fields[5]!)) return fields[5]
  }
  return undefined
}
