import {spawn} from 'node:child_process'
import {mkdir, mkdtemp, rm, stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {type OverlayLayers, scanOverlay} from './overlay.js'
import {type ChangeKind, normalizeHeaders, patchedPaths} from './patch.js'
import {riskyReason} from './risky.js'

export interface WorkspaceChange {
  path: string
  change: ChangeKind
  /** Needs --force to be applied (src/workspace/risky.ts). */
  risky: boolean
  /** The host changed this path after the sandbox did: applying would undo the host's change. */
  conflict: boolean
}

export interface WorkspaceDiff {
  changes: WorkspaceChange[]
  /** Entries changed under `.git`: never in the patch. */
  git_changes: number
  /** Files the sandbox wrote that the host repository ignores (node_modules/, build output): never in the patch. */
  ignored_changes: number
  /** A git-style patch (`git apply` applies it), binary files included. */
  patch: string
}

interface Owner {
  uid: number
  gid: number
}

const GIT_TIMEOUT_MS = 120_000

/**
 * What a sandbox changed in its workspace, relative to the host directory it was
 * made from. Files are read through tar running as the owner of each layer (the
 * sandbox's uid for the upper layer, the repository's owner for the lower one)
 * when the daemon is root, so a symlink swapped in mid-read reaches nothing they
 * could not read themselves.
 */
export async function diffWorkspace(layers: OverlayLayers): Promise<WorkspaceDiff> {
  const scan = await scanOverlay(layers)
  const lowerOwner = await ownerToDropTo(layers.lower)
  const ignored = await ignoredByHost(layers.lower, scan.upperPaths, lowerOwner)
  const temp = await mkdtemp(join(tmpdir(), 'cleanroom-diff-'))
  let patch: string
  try {
    await copyFiles(layers.lower, scan.lowerPaths.filter((path) => !ignored.has(path)), join(temp, 'a'), lowerOwner)
    await copyFiles(layers.upper, scan.upperPaths.filter((path) => !ignored.has(path)), join(temp, 'b'), await ownerToDropTo(layers.upper))
    patch = normalizeHeaders(await gitDiff(temp))
  } finally {
    await rm(temp, {recursive: true, force: true})
  }
  const changes = patchedPaths(patch)
    .map(({path, change}) => ({
      path,
      change,
      risky: riskyReason(path) !== undefined,
      conflict: (scan.lowerCtime.get(path) ?? 0) > (scan.changedAt.get(path) ?? Number.POSITIVE_INFINITY),
    }))
    .sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  return {changes, git_changes: scan.gitChanges, ignored_changes: ignored.size, patch}
}

/** The owner of `dir` when the daemon is root and it is someone else: reads there are done as them. */
async function ownerToDropTo(dir: string): Promise<Owner | undefined> {
  if (process.getuid?.() !== 0) return undefined
  const stats = await stat(dir)
  return stats.uid === 0 ? undefined : {uid: stats.uid, gid: stats.gid}
}

/** Which of `paths` the host repository's ignore rules cover; none when it is not a git repository. */
async function ignoredByHost(repo: string, paths: string[], owner: Owner | undefined): Promise<Set<string>> {
  if (paths.length === 0) return new Set()
  const result = await run('git', ['-c', 'core.fsmonitor=false', '-C', repo, 'check-ignore', '-z', '--stdin'], {input: paths.map((path) => `${path}\0`).join(''), owner})
  // 1: none ignored; 128: not a repository (or no git).
  if (result.code !== 0) return new Set()
  return new Set(result.stdout.toString('utf8').split('\0').filter((path) => path !== ''))
}

/** Copies `paths` (relative to `root`, no directories) into `dest`, modes kept, symlinks as symlinks. */
async function copyFiles(root: string, paths: string[], dest: string, owner: Owner | undefined): Promise<void> {
  await mkdir(dest, {recursive: true, mode: 0o700})
  if (paths.length === 0) return
  // The child changes into `root` before it drops to `owner`: a root daemon's state dir is not on a path the sandbox's uid can walk.
  const reader = spawn('tar', ['-c', '-f', '-', '--no-recursion', '--null', '-T', '-'], {
    cwd: root,
    stdio: ['pipe', 'pipe', 'pipe'],
    ...(owner ? {uid: owner.uid, gid: owner.gid} : {}),
  })
  const writer = spawn('tar', ['-x', '-f', '-', '--no-same-owner', '--no-same-permissions', '-C', dest], {stdio: ['pipe', 'ignore', 'pipe']})
  // A tar that stops early (its error is reported below) must not crash the daemon with EPIPE.
  reader.stdin.on('error', () => undefined)
  writer.stdin.on('error', () => undefined)
  reader.stdout.pipe(writer.stdin)
  reader.stdin.end(paths.map((path) => `${path}\0`).join(''))
  const [read, written] = await Promise.all([exited(reader), exited(writer)])
  // tar exits 1 when a file changed while it was read: the sandbox is still writing; the copy is what it saw.
  if (read.code !== 0 && read.code !== 1) {
    throw new CleanroomError('backend_failed', `could not read the workspace files under ${root}: ${read.stderr.trim() || `tar exited ${read.code}`}`, {
      suggestions: ['If the sandbox is still writing files, wait for it and try again'],
    })
  }
  if (written.code !== 0) throw new CleanroomError('backend_failed', `could not copy the workspace files for the diff: ${written.stderr.trim()}`)
}

async function gitDiff(temp: string): Promise<string> {
  const result = await run(
    'git',
    ['diff', '--no-index', '--binary', '--no-prefix', '--no-renames', '--no-color', '--no-ext-diff', '--no-textconv', 'a', 'b'],
    {cwd: temp},
  )
  // 0: no difference, 1: some.
  if (result.code !== 0 && result.code !== 1) throw new CleanroomError('backend_failed', `git diff failed: ${result.stderr.trim()}`)
  return result.stdout.toString('utf8')
}

interface RunResult {
  code: number | null
  stdout: Buffer
  stderr: string
}

function run(command: string, args: string[], options: {cwd?: string; input?: string; owner?: Owner}): Promise<RunResult> {
  const cwd = options.cwd ?? '/'
  const child = spawn(command, args, {
    cwd,
    // No user or system git config: nothing of theirs (diff drivers, pagers) runs here.
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      LANG: 'C',
      HOME: cwd,
      GIT_CONFIG_NOSYSTEM: '1',
      GIT_CONFIG_GLOBAL: '/dev/null',
      GIT_CEILING_DIRECTORIES: dirname(cwd),
    },
    stdio: ['pipe', 'pipe', 'pipe'],
    timeout: GIT_TIMEOUT_MS,
    ...(options.owner ? {uid: options.owner.uid, gid: options.owner.gid} : {}),
  })
  const stdout: Buffer[] = []
  child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
  child.stdin.on('error', () => undefined)
  child.stdin.end(options.input)
  return exited(child).then(({code, stderr}) => ({code, stderr, stdout: Buffer.concat(stdout)}))
}

function exited(child: ReturnType<typeof spawn>): Promise<{code: number | null; stderr: string}> {
  return new Promise((resolve, reject) => {
    let stderr = ''
    child.stderr?.on('data', (chunk: Buffer) => {
      stderr += chunk.toString('utf8')
    })
    child.on('error', reject)
    child.on('close', (code) => resolve({code, stderr}))
  })
}
