import {stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {readBoundedFile} from '../util/bounded-file.js'
import {dirsUpToGitRoot} from '../util/repo.js'
import {displayPath, YamlFile} from '../util/yaml-file.js'
import {compilePolicyBytes, DEFAULT_POLICY, invalidPolicy, POLICY_FILE_LIMITS} from './compile.js'
import type {CompiledPolicy} from './schema.js'

/** Where a repository's policy may live, in order: the root one wins when both exist. */
export const POLICY_SEARCH_PLACES = ['cleanroom.yaml', '.buildkite/cleanroom.yaml'] as const

export interface LoadedPolicy {
  /** Absolute path of the policy file, or null when none was found and the default applies. */
  source: string | null
  policy: CompiledPolicy
}

/**
 * Compiles a policy file's bytes; `display` names the file in messages. The
 * daemon passes one that runs in its policy worker (see worker.ts), so a
 * hostile file never holds up its event loop.
 */
export type PolicyCompiler = (display: string, bytes: Uint8Array) => CompiledPolicy | Promise<CompiledPolicy>

/**
 * The policy file for `dir`: the first of POLICY_SEARCH_PLACES in `dir`, then
 * in each parent up to the git root (the nearest directory with a `.git`).
 * Outside a git repository only `dir` itself is searched.
 */
export async function findPolicyFile(dir: string): Promise<string | undefined> {
  return (await searchPolicy(dir))?.source
}

/** Finds and compiles the policy for `dir`; no file means DEFAULT_POLICY, invalid means policy_invalid. */
export async function loadPolicy(dir: string, compile: PolicyCompiler = compilePolicyBytes): Promise<LoadedPolicy> {
  const found = await searchPolicy(dir)
  if (found === undefined) return {source: null, policy: DEFAULT_POLICY}
  return {source: found.source, policy: await compile(displayPath(found.source), found.bytes)}
}

/** The policy file in `dir` itself, parents not searched. */
export async function policyFileIn(dir: string): Promise<string | undefined> {
  return (await searchIn(await directory(dir)))?.source
}

interface FoundPolicy {
  source: string
  bytes: Uint8Array
}

async function searchPolicy(dir: string): Promise<FoundPolicy | undefined> {
  for (const candidate of await dirsUpToGitRoot(await directory(dir))) {
    const found = await searchIn(candidate)
    if (found) return found
  }
  return undefined
}

/**
 * The first policy file in `dir`. Each is read with a size limit and only if it
 * is a regular file: a policy that is too large, a fifo or a device is refused
 * here, before any of it is parsed. A directory by a policy's name is skipped.
 * Nothing of the repository is run or imported: the file is read as YAML only.
 */
async function searchIn(dir: string): Promise<FoundPolicy | undefined> {
  for (const place of POLICY_SEARCH_PLACES) {
    const source = join(dir, place)
    const read = await readBoundedFile(source, POLICY_FILE_LIMITS.maxBytes).catch((error: NodeJS.ErrnoException) => {
      throw new CleanroomError('policy_invalid', `cannot read the policy ${displayPath(source)}: ${error.message}`, {cause: error})
    })
    if (read.kind === 'missing' || (read.kind === 'not-a-file' && read.type === 'a directory')) continue
    if (read.kind === 'bytes') return {source, bytes: read.bytes}
    const refused = read.kind === 'too-large' ? YamlFile.tooLarge(displayPath(source), read.size, POLICY_FILE_LIMITS) : YamlFile.refused(displayPath(source), `is ${read.type}, not a regular file: a policy is a YAML file`, POLICY_FILE_LIMITS)
    throw invalidPolicy(refused)
  }
  return undefined
}

/** `dir` made absolute; a typo must not quietly give the default policy. */
async function directory(dir: string): Promise<string> {
  const path = resolve(dir)
  const stats = await stat(path).catch(() => undefined)
  if (!stats?.isDirectory()) throw new CleanroomError('usage', `cannot look for a policy in ${path}: not a directory`)
  return path
}
