import {posix} from 'node:path'

import {isEnvName} from '../util/env-name.js'
import {type PathSegment, readSection, type YamlFile} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import {POLICY_LIMITS, type StageBlock} from './schema.js'

/**
 * The blocks of `sandbox.dependencies` and `sandbox.services`, as the Go
 * cleanroom declares them: `{name, command, inputs.files, env, outputs.dirs,
 * outputs.files}`. Checked as the Go tool checks them (its messages where it
 * has them) and normalised: paths cleaned, lists sorted, home and workspace
 * shorthands written one way, so equal blocks compile (and hash) the same.
 */

const BLOCK_KEYS = ['name', 'command', 'inputs', 'env', 'outputs']
const BLOCK_NAME = /^[A-Za-z0-9][\w.-]*$/
const HOME = '${HOME}'

/** A block's output with where it was declared, for the overlap checks across blocks and stages. */
export interface DeclaredOutput {
  block: string
  kind: 'dir' | 'file'
  path: string
  at: PathSegment[]
}

export interface ReadBlocks {
  blocks: StageBlock[]
  outputs: DeclaredOutput[]
}

/** A list of blocks at `path`; undefined when absent, empty or invalid. */
export function readBlocks(file: YamlFile, path: PathSegment[], value: unknown, workspace: string): ReadBlocks | undefined {
  if (value === undefined || value === null) return undefined
  if (!Array.isArray(value)) {
    file.report(path, 'must be a list of blocks, each {name, command, inputs, outputs}')
    return undefined
  }
  if (!withinLimit(file, path, value, POLICY_LIMITS.maxBlocks, 'blocks')) return undefined
  const blocks: StageBlock[] = []
  const outputs: DeclaredOutput[] = []
  const names = new Set<string>()
  let valid = true
  for (const [i, entry] of value.entries()) {
    const read = readBlock(file, [...path, i], entry, workspace)
    if (read === undefined) {
      valid = false
      continue
    }
    if (names.has(read.block.name)) {
      file.report([...path, i, 'name'], `${JSON.stringify(read.block.name)} is duplicated: each block needs its own name`)
      valid = false
    }
    names.add(read.block.name)
    blocks.push(read.block)
    outputs.push(...read.outputs)
  }
  if (!valid || !checkOutputOverlaps(file, outputs)) return undefined
  return blocks.length === 0 ? undefined : {blocks, outputs}
}

/**
 * Outputs must not repeat or nest: two blocks (or one block twice) writing the
 * same directory would each cache the other's files. Reported at the inner
 * path; returns whether there were none.
 */
export function checkOutputOverlaps(file: YamlFile, outputs: readonly DeclaredOutput[]): boolean {
  const before = file.problems
  const byPath = new Map<string, DeclaredOutput>()
  for (const output of outputs) {
    const previous = byPath.get(output.path)
    if (previous) file.report(output.at, `output ${output.kind} ${JSON.stringify(output.path)} of block "${output.block}" duplicates the output ${previous.kind} of block "${previous.block}"`)
    else byPath.set(output.path, output)
  }
  for (const output of byPath.values()) {
    for (let parent = parentOf(output.path); parent !== undefined; parent = parentOf(parent)) {
      const outer = byPath.get(parent)
      if (outer?.kind === 'dir') {
        file.report(output.at, `output ${output.kind} ${JSON.stringify(output.path)} of block "${output.block}" is inside output dir ${JSON.stringify(outer.path)} of block "${outer.block}"`)
        break
      }
    }
  }
  return file.problems === before
}

function parentOf(path: string): string | undefined {
  const slash = path.lastIndexOf('/')
  return slash <= 0 ? undefined : path.slice(0, slash)
}

function readBlock(file: YamlFile, path: PathSegment[], value: unknown, workspace: string): {block: StageBlock; outputs: DeclaredOutput[]} | undefined {
  if (!isRecord(value)) {
    file.report(path, 'must be a mapping with name, command, inputs, outputs')
    return undefined
  }
  const before = file.problems
  reportUnknownKeys(file, path, value, BLOCK_KEYS)
  const name = readName(file, [...path, 'name'], value.name)
  const command = readCommand(file, [...path, 'command'], value.command)
  const env = readEnv(file, [...path, 'env'], value.env, workspace)
  const beforeInputs = file.problems
  const inputs = readSection(file, [...path, 'inputs'], value.inputs, ['files'])
  const files = readInputFiles(file, [...path, 'inputs', 'files'], inputs?.files)
  if (files.length === 0 && file.problems === beforeInputs) file.report([...path, 'inputs', 'files'], 'must include at least one file or glob')
  const beforeOutputs = file.problems
  const outputs = readSection(file, [...path, 'outputs'], value.outputs, ['dirs', 'files'])
  const dirs = readOutputPaths(file, [...path, 'outputs', 'dirs'], outputs?.dirs, workspace)
  const outputFiles = readOutputPaths(file, [...path, 'outputs', 'files'], outputs?.files, workspace)
  if (dirs.length === 0 && outputFiles.length === 0 && file.problems === beforeOutputs) file.report([...path, 'outputs'], 'must include at least one dir or file')
  if (file.problems !== before || name === undefined || command === undefined) return undefined
  const declared = (kind: 'dir' | 'file', list: {path: string; at: PathSegment[]}[]) => list.map((entry) => ({block: name, kind, ...entry}))
  const block: StageBlock = {
    name,
    command,
    inputs: {files},
    ...(env && {env}),
    outputs: {...(dirs.length > 0 && {dirs: dirs.map((entry) => entry.path)}), ...(outputFiles.length > 0 && {files: outputFiles.map((entry) => entry.path)})},
  }
  return {block, outputs: [...declared('dir', dirs), ...declared('file', outputFiles)]}
}

function readName(file: YamlFile, path: PathSegment[], value: unknown): string | undefined {
  const name = text(file, path, value)?.trim()
  if (name === undefined || name === '') {
    file.report(path, 'is required: a name for the block (letters, digits, _, . and -)')
    return undefined
  }
  if (!BLOCK_NAME.test(name)) {
    file.report(path, `${JSON.stringify(name)} must match [A-Za-z0-9][A-Za-z0-9_.-]*`)
    return undefined
  }
  return name
}

/** A string runs as `sh -lc <string>`; a list is the argv itself. */
export function readCommand(file: YamlFile, path: PathSegment[], value: unknown): string[] | undefined {
  if (value === undefined || value === null) {
    file.report(path, 'is required: a shell command, or a list of arguments')
    return undefined
  }
  if (typeof value === 'string') {
    if (value.trim() === '') {
      file.report(path, 'must not be empty')
      return undefined
    }
    return ['sh', '-lc', value.trim()]
  }
  if (!Array.isArray(value)) {
    file.report(path, 'must be a string (run with sh -lc) or a list of arguments')
    return undefined
  }
  if (value.length === 0) {
    file.report(path, 'must not be empty')
    return undefined
  }
  if (!withinLimit(file, path, value, POLICY_LIMITS.maxBlockEntries, 'arguments')) return undefined
  const argv: string[] = []
  for (const [i, arg] of value.entries()) {
    const argument = text(file, [...path, i], arg)?.trim()
    if (argument === undefined) file.report([...path, i], 'must be a string')
    else if (argument === '') file.report([...path, i], 'cannot be empty')
    else argv.push(argument)
  }
  return argv.length === value.length ? argv : undefined
}

function readInputFiles(file: YamlFile, path: PathSegment[], value: unknown): string[] {
  const entries = list(file, path, value, 'a list of repository-relative files or globs')
  const files = new Set<string>()
  for (const [i, entry] of entries.entries()) {
    const raw = text(file, [...path, i], entry)?.trim()
    if (raw === undefined) {
      file.report([...path, i], 'must be a string: a repository-relative file or glob')
      continue
    }
    if (raw === '') {
      file.report([...path, i], 'cannot be empty')
      continue
    }
    if (raw.startsWith('/')) {
      file.report([...path, i], `${JSON.stringify(raw)} must be relative (to the repository root)`)
      continue
    }
    const cleaned = posix.normalize(raw.replaceAll('\\', '/')).replace(/\/$/, '')
    if (cleaned === '.' || cleaned === '..' || cleaned.startsWith('../')) {
      file.report([...path, i], `${JSON.stringify(raw)} must stay within the repository root`)
      continue
    }
    files.add(cleaned)
  }
  return sortedText(files)
}

function readEnv(file: YamlFile, path: PathSegment[], value: unknown, workspace: string): Record<string, string> | undefined {
  if (value === undefined || value === null) return undefined
  if (!isRecord(value)) {
    file.report(path, 'must be a mapping of variable names to values')
    return undefined
  }
  const names = Object.keys(value)
  if (names.length > POLICY_LIMITS.maxBlockEntries) {
    file.report(path, `has ${names.length} variables: a block may set at most ${POLICY_LIMITS.maxBlockEntries}`)
    return undefined
  }
  const env: Record<string, string> = {}
  for (const name of names.sort()) {
    const raw = text(file, [...path, name], value[name])
    if (!isEnvName(name.trim())) file.report([...path, name], 'must be a valid environment variable name', 'key')
    else if (raw === undefined) file.report([...path, name], 'must be a string')
    else env[name.trim()] = expandShorthand(raw, workspace)?.text ?? raw
  }
  return Object.keys(env).length > 0 ? env : undefined
}

function readOutputPaths(file: YamlFile, path: PathSegment[], value: unknown, workspace: string): {path: string; at: PathSegment[]}[] {
  const entries = list(file, path, value, 'a list of paths the block writes')
  const paths: {path: string; at: PathSegment[]}[] = []
  const seen = new Set<string>()
  for (const [i, entry] of entries.entries()) {
    const at = [...path, i]
    const raw = text(file, at, entry)
    const output = raw === undefined ? {problem: 'must be a string: a path the block writes'} : outputPath(raw.trim(), workspace)
    if ('problem' in output) {
      file.report(at, output.problem)
    } else if (seen.has(output.path)) {
      file.report(at, `duplicates output path ${JSON.stringify(output.path)}`)
    } else {
      seen.add(output.path)
      paths.push({path: output.path, at})
    }
  }
  return paths.sort((a, b) => compareText(a.path, b.path))
}

/**
 * A block output as an absolute guest path, or `${HOME}/…` (the block's home is
 * the backend's to choose); relative paths and `$WORKSPACE` are inside the
 * repository. Returns the problem instead when the path cannot be an output.
 */
function outputPath(raw: string, workspace: string): {path: string} | {problem: string} {
  const problem = (message: string) => ({problem: message})
  if (raw === '') return problem('cannot be empty')
  const expanded = expandShorthand(raw, workspace)
  if (raw.startsWith('~') && expanded?.base !== 'home') return problem(`${JSON.stringify(raw)}: ~user is not supported (use ~/ or \${HOME}/)`)
  const rest = (expanded?.text ?? raw).replaceAll('\\', '/')
  if (rest.replace(HOME, '').includes('$')) return problem(`${JSON.stringify(raw)} contains an unsupported variable expansion (only \${HOME} and \${WORKSPACE})`)
  if (/[*?[]/.test(rest)) return problem(`${JSON.stringify(raw)} must not contain glob characters`)
  if (expanded?.base === 'home') {
    const inside = rest.slice(HOME.length)
    if (inside.split('/').includes('..')) return problem(`${JSON.stringify(raw)} must stay within the home directory`)
    const cleaned = posix.normalize(`/${inside}`).replace(/\/$/, '')
    return {path: HOME + cleaned}
  }
  let absolute: string
  if (rest.startsWith('/')) {
    absolute = posix.normalize(rest)
  } else {
    const relative = posix.normalize(rest)
    if (relative === '.' || relative === './' || relative === '..' || relative.startsWith('../')) return problem(`${JSON.stringify(raw)} must stay within the repository root`)
    absolute = posix.join(workspace, relative)
  }
  absolute = absolute.length > 1 ? absolute.replace(/\/$/, '') : absolute
  if (expanded?.base === 'workspace' && absolute !== workspace && !absolute.startsWith(`${workspace}/`)) return problem(`${JSON.stringify(raw)} must stay within the repository root`)
  if (absolute === '/') return problem('must not be /')
  if (absolute === workspace) return problem('must not be the repository root')
  return {path: absolute}
}

/** The leading `~`, `$HOME`, `${HOME}` (as `${HOME}`) or `$WORKSPACE`, `${WORKSPACE}` (as the repository path) of `value`. */
function expandShorthand(value: string, workspace: string): {text: string; base: 'home' | 'workspace'} | undefined {
  for (const prefix of ['~', '$HOME', HOME]) {
    if (value === prefix || value.startsWith(`${prefix}/`)) return {text: HOME + value.slice(prefix.length), base: 'home'}
  }
  for (const prefix of ['$WORKSPACE', '${WORKSPACE}']) {
    if (value === prefix || value.startsWith(`${prefix}/`)) return {text: workspace + value.slice(prefix.length), base: 'workspace'}
  }
  return undefined
}

/** Text where the Go tool reads a string: YAML numbers and booleans keep the spelling they were written in. */
function text(file: YamlFile, path: PathSegment[], value: unknown): string | undefined {
  if (typeof value === 'string') return value
  if (typeof value === 'number' || typeof value === 'boolean') return file.scalarSource(path) ?? String(value)
  return undefined
}

function list(file: YamlFile, path: PathSegment[], value: unknown, what: string): unknown[] {
  if (value === undefined || value === null) return []
  if (!Array.isArray(value)) {
    file.report(path, `must be ${what}`)
    return []
  }
  return withinLimit(file, path, value, POLICY_LIMITS.maxBlockEntries, 'entries') ? value : []
}

function withinLimit(file: YamlFile, path: PathSegment[], value: readonly unknown[], max: number, what: string): boolean {
  if (value.length <= max) return true
  file.report(path, `has ${value.length} ${what}: at most ${max} are allowed here`)
  return false
}

/** Code-unit order: the order (and so the hash) must not depend on the machine's locale. */
function compareText(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

function sortedText(values: Iterable<string>): string[] {
  return [...values].sort(compareText)
}
