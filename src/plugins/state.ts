import {mkdir, readFile, rename, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {CleanroomError, messageOf} from '../errors/index.js'
import {isRecord} from '../util/record.js'

/**
 * The list of installed and linked plugins, kept where @oclif/plugin-plugins
 * keeps it (`<data dir>/package.json`, `oclif.plugins`) and in its format, so
 * `cleanroom plugins`, `plugins uninstall` and oclif itself read the same list.
 * cleanroom adds one key to an entry: what the user allowed it (`cleanroom`).
 */
export type PluginEntry = UserPluginEntry | LinkPluginEntry

export interface UserPluginEntry {
  type: 'user'
  name: string
  /** The npm tag or range asked for (registry installs). */
  tag?: string
  /** The source asked for (file:, git, GitHub), when it was not a registry name. */
  url?: string
  cleanroom?: PluginConsent
}

export interface LinkPluginEntry {
  type: 'link'
  name: string
  /** The linked directory. */
  root: string
  cleanroom?: PluginConsent
}

/** What the user allowed a plugin beyond being data, given for one exact package.json. */
export interface PluginConsent {
  /** Set when installed with --allow-code: the SHA-256 of the package.json whose code was allowed to run. */
  allow_code?: {package_json_sha256: string}
  /** Agents the plugin was allowed to replace with --replace. */
  replaces?: string[]
}

/** Where `npm install` keeps the tarballs cleanroom installed from, relative to the data dir. */
export const TARBALL_DIR = 'cleanroom-tarballs'

export function statePath(dataDir: string): string {
  return join(dataDir, 'package.json')
}

/** The installed and linked plugins; none when the data dir has no package.json yet. */
export async function readPluginEntries(dataDir: string): Promise<PluginEntry[]> {
  const state = await readState(dataDir)
  const listed = isRecord(state.oclif) && Array.isArray(state.oclif.plugins) ? state.oclif.plugins : []
  return listed.flatMap((entry): PluginEntry[] => {
    // plugin-plugins also accepts a bare name for a registry install.
    if (typeof entry === 'string') return [{type: 'user', name: entry, tag: 'latest'}]
    if (!isRecord(entry) || typeof entry.name !== 'string') return []
    const cleanroom = isRecord(entry.cleanroom) ? (entry.cleanroom as PluginConsent) : undefined
    if (entry.type === 'link' && typeof entry.root === 'string') return [{type: 'link', name: entry.name, root: entry.root, ...(cleanroom ? {cleanroom} : {})}]
    if (entry.type !== 'user') return []
    const user: UserPluginEntry = {type: 'user', name: entry.name}
    if (typeof entry.tag === 'string') user.tag = entry.tag
    if (typeof entry.url === 'string') user.url = entry.url
    if (cleanroom) user.cleanroom = cleanroom
    return [user]
  })
}

/** Adds `entry` to the list, replacing any entry of the same name, keeping everything else in the file. */
export async function savePluginEntry(dataDir: string, entry: PluginEntry): Promise<void> {
  const state = await readState(dataDir)
  const oclif = isRecord(state.oclif) ? state.oclif : {}
  const listed = Array.isArray(oclif.plugins) ? oclif.plugins : []
  const others = listed.filter((other) => entryName(other) !== entry.name)
  await writeState(dataDir, {...state, oclif: {schema: 1, ...oclif, plugins: [...others, entry]}})
}

/** Drops the entry of `name` from the list (npm's copy is the caller's to remove). */
export async function removePluginEntry(dataDir: string, name: string): Promise<void> {
  const state = await readState(dataDir)
  if (!isRecord(state.oclif) || !Array.isArray(state.oclif.plugins)) return
  const plugins = state.oclif.plugins.filter((entry) => entryName(entry) !== name)
  await writeState(dataDir, {...state, oclif: {...state.oclif, plugins}})
}

/** The data dir's package.json dependencies: what npm installed there. */
export async function installedDependencies(dataDir: string): Promise<Record<string, string>> {
  const state = await readState(dataDir)
  if (!isRecord(state.dependencies)) return {}
  return Object.fromEntries(Object.entries(state.dependencies).filter((pair): pair is [string, string] => typeof pair[1] === 'string'))
}

/** Creates the data dir's package.json, as plugin-plugins would, when there is none. */
export async function ensureState(dataDir: string, cliName: string): Promise<void> {
  const state = await readState(dataDir)
  if (Object.keys(state).length > 0) return
  await writeState(dataDir, {name: cliName, private: true, dependencies: {}, oclif: {schema: 1, plugins: []}})
}

function entryName(entry: unknown): unknown {
  return typeof entry === 'string' ? entry : isRecord(entry) ? entry.name : undefined
}

async function readState(dataDir: string): Promise<Record<string, unknown>> {
  let text: string
  try {
    text = await readFile(statePath(dataDir), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw stateError(dataDir, error)
  }
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch (error) {
    throw stateError(dataDir, error)
  }
  if (!isRecord(parsed)) throw stateError(dataDir, new Error('not a JSON object'))
  return parsed
}

async function writeState(dataDir: string, state: Record<string, unknown>): Promise<void> {
  const path = statePath(dataDir)
  await mkdir(dirname(path), {recursive: true})
  const temporary = `${path}.${process.pid}.tmp`
  await writeFile(temporary, `${JSON.stringify(state, null, 2)}\n`)
  await rename(temporary, path)
}

function stateError(dataDir: string, error: unknown): CleanroomError {
  return new CleanroomError('plugin_install_failed', `cannot read the list of installed plugins ${statePath(dataDir)}: ${messageOf(error)}`, {
    cause: error,
    suggestions: [`Fix or remove ${statePath(dataDir)} (cleanroom plugins reset --hard starts over).`],
  })
}
