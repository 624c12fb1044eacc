import {cosmiconfig, type PublicExplorer} from 'cosmiconfig'
import {mkdtempSync, rmdirSync} from 'node:fs'
import {stat} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {dirsUpToGitRoot} from '../util/repo.js'
import {displayPath, YamlFile} from '../util/yaml-file.js'
import {compilePolicy, DEFAULT_POLICY} from './compile.js'
import type {CompiledPolicy} from './schema.js'

/** Where a repository's policy may live, in order: the root one wins when both exist. */
export const POLICY_SEARCH_PLACES = ['cleanroom.yaml', '.buildkite/cleanroom.yaml'] as const

export interface LoadedPolicy {
  /** Absolute path of the policy file, or null when none was found and the default applies. */
  source: string | null
  policy: CompiledPolicy
}

/**
 * The policy file for `dir`: the first of POLICY_SEARCH_PLACES in `dir`, then
 * in each parent up to the git root (the nearest directory with a `.git`).
 * Outside a git repository only `dir` itself is searched.
 */
export async function findPolicyFile(dir: string): Promise<string | undefined> {
  return (await searchPolicy(dir))?.source
}

/** Finds and compiles the policy for `dir`; no file means DEFAULT_POLICY, invalid means policy_invalid. */
export async function loadPolicy(dir: string): Promise<LoadedPolicy> {
  const found = await searchPolicy(dir)
  if (found === undefined) return {source: null, policy: DEFAULT_POLICY}
  return {source: found.source, policy: compilePolicy(found.file)}
}

/** The policy file in `dir` itself, parents not searched. */
export async function policyFileIn(dir: string): Promise<string | undefined> {
  return (await searchIn(await directory(dir)))?.source
}

interface FoundPolicy {
  source: string
  file: YamlFile
}

async function searchPolicy(dir: string): Promise<FoundPolicy | undefined> {
  for (const candidate of await dirsUpToGitRoot(await directory(dir))) {
    const found = await searchIn(candidate)
    if (found) return found
  }
  return undefined
}

/** searchStrategy 'none' looks in `dir` only; the walk up is ours, so it stops at the git root. */
async function searchIn(dir: string): Promise<FoundPolicy | undefined> {
  const result = await policyExplorer().search(dir)
  if (!result) return undefined
  // cosmiconfig does not call the loader for an empty file; that is still the policy, and an invalid one.
  const file = result.config instanceof YamlFile ? result.config : new YamlFile(displayPath(result.filepath), '')
  return {source: result.filepath, file}
}

/** `dir` made absolute; a typo must not quietly give the default policy. */
async function directory(dir: string): Promise<string> {
  const path = resolve(dir)
  const stats = await stat(path).catch(() => undefined)
  if (!stats?.isDirectory()) throw new CleanroomError('usage', `cannot look for a policy in ${path}: not a directory`)
  return path
}

let explorer: PublicExplorer | undefined

/**
 * cosmiconfig, when an explorer is made, reads "meta config" from the process's
 * working directory: package.json's `cosmiconfig` key and .config/config.{json,yaml,js,ts,…}.
 * It would run a repository's .config/config.js on the host and take a `cleanroom:`
 * key in it as the policy. No option turns that off, so the explorer is made in
 * an empty directory of our own.
 */
function policyExplorer(): PublicExplorer {
  if (explorer) return explorer
  const cwd = process.cwd()
  const empty = mkdtempSync(join(tmpdir(), 'cleanroom-policy-'))
  try {
    process.chdir(empty)
    explorer = cosmiconfig('cleanroom', {
      searchPlaces: [...POLICY_SEARCH_PLACES],
      searchStrategy: 'none',
      // The loader hands back a YamlFile: parsed by `yaml` with positions kept for error
      // messages, and not a plain object, so cosmiconfig never follows a `$import` key in it.
      loaders: {'.yaml': (filepath: string, content: string) => new YamlFile(displayPath(filepath), content)},
      ignoreEmptySearchPlaces: false,
      cache: false,
    })
    return explorer
  } finally {
    process.chdir(cwd)
    rmdirSync(empty)
  }
}
