import {Config, type Interfaces, Plugin} from '@oclif/core'
import {realpath} from 'node:fs/promises'
import {fileURLToPath} from 'node:url'

import {messageOf} from '../errors/index.js'
import {isRecord} from '../util/record.js'
import {type PluginEntry, readPluginEntries, statePath} from './state.js'
import {type VettedPlugin, vetPlugin} from './vet.js'

/** Where a refused plugin is reported: stderr, one line each. */
export type Warn = (line: string) => void

/**
 * The oclif configuration of the CLI at `root` (a path or file URL in it).
 * oclif would load every installed or linked plugin by itself, and loading is
 * where a plugin's code runs (its `init` hook on every command, its commands,
 * its own plugins). So oclif loads only the
 * CLI and the plugins that ship with it; each installed or linked plugin is
 * then checked from its files (vet.ts) and added only when it is data, or
 * code the user allowed for its exact package.json. A plugin left out is
 * named on stderr with the reason and the fix, on every command, until it is
 * removed or allowed: never silently.
 */
export async function loadCliConfig(root: string, warn: Warn = stderrWarning): Promise<Config> {
  const config = await Config.load({root: root.startsWith('file:') ? fileURLToPath(root) : root, userPlugins: false})
  let entries: PluginEntry[]
  try {
    entries = await readPluginEntries(config.dataDir)
  } catch (error) {
    warn(`no installed plugin is loaded: ${messageOf(error)}`)
    return config
  }

  const shipped = new Set(config.getPluginsList().map((plugin) => plugin.name))
  for (const entry of entries) {
    const vetting = await vetPlugin(entry, config.dataDir, shipped)
    if (!vetting.ok) {
      warn(refusal(entry, vetting.reason, vetting.code))
      continue
    }
    try {
      await addPlugin(config, vetting.plugin)
    } catch (error) {
      warn(`plugin ${entry.name} is not loaded: ${messageOf(error)}`)
    }
  }
  return config
}

/** Loads a vetted plugin into `config` as oclif would, with the package.json that was vetted. */
async function addPlugin(config: Interfaces.Config, vetted: VettedPlugin): Promise<void> {
  const {entry, code} = vetted
  const plugin = new Plugin({
    name: entry.name,
    type: entry.type,
    // As oclif's own loader: a user plugin is found from the data dir's package.json, a linked one is its directory.
    root: entry.type === 'link' ? entry.root : statePath(config.dataDir),
    ...(entry.type === 'user' ? {tag: entry.tag, url: entry.url} : {}),
    pjson: vetted.pjson as Interfaces.PJSON,
    // A data plugin declares no commands; an oclif.manifest.json appearing in it later must not add any.
    ignoreManifest: code.length === 0,
  })
  await plugin.load()
  // oclif finds a user plugin's root through Node's resolution; it must be the directory that was vetted.
  if ((await realpath(plugin.root)) !== (await realpath(vetted.root))) throw new Error(`oclif would load it from ${plugin.root}, not ${vetted.root}`)
  config.plugins.set(plugin.name, plugin)
  if (code.length > 0) await addChildPlugins(config, plugin)
}

/** The plugins an allowed code plugin brings in `oclif.plugins`, loaded as oclif's loader would load them. */
async function addChildPlugins(config: Interfaces.Config, parent: Plugin): Promise<void> {
  const patterns = isRecord(parent.pjson.oclif) && Array.isArray(parent.pjson.oclif.plugins) ? parent.pjson.oclif.plugins.map(String) : []
  const dependencies = Object.keys(parent.pjson.dependencies ?? {})
  for (const name of dependencies.filter((dependency) => patterns.some((pattern) => globMatches(pattern, dependency)))) {
    if (config.plugins.has(name)) continue
    const child = new Plugin({name, root: parent.root, type: parent.type, parent})
    await child.load()
    config.plugins.set(child.name, child)
    parent.children.push(child)
    await addChildPlugins(config, child)
  }
}

/** oclif matches `oclif.plugins` entries against dependency names as globs (`@acme/plugin-*`). */
function globMatches(pattern: string, name: string): boolean {
  const source = pattern
    .split(/(\*\*|\*)/)
    .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]*' : part.replaceAll(/[.+?^${}()|[\]\\]/g, String.raw`\$&`)))
    .join('')
  return new RegExp(`^${source}$`).test(name)
}

/** The warning for a plugin left out, with the command that adds it again (with --allow-code when code was the reason) and the one that removes it. */
function refusal(entry: PluginEntry, reason: string, code: boolean): string {
  const source = entry.type === 'link' ? entry.root : (entry.url ?? (entry.tag && entry.tag !== 'latest' ? `${entry.name}@${entry.tag}` : entry.name))
  const again = `cleanroom plugins ${entry.type === 'link' ? 'link' : 'install'} ${source}`
  const fix = code ? `If you trust its code: ${again} --allow-code` : `To add it again: ${again}`
  return `plugin ${entry.name} is not loaded: ${reason}. ${fix}; to remove it: cleanroom plugins uninstall ${entry.name}`
}

function stderrWarning(line: string): void {
  process.stderr.write(`cleanroom: warning: ${line}\n`)
}
