import {copyFile, mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {type AgentRegistry} from '../agents/registry.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import {admitPlugin, type InspectedPlugin, inspectPlugin} from './admit.js'
import {runNpm} from './npm.js'
import {renderPreview} from './preview.js'
import {type PluginSource, npmSpec} from './source.js'
import {ensureState, installedDependencies, readPluginEntries, removePluginEntry, savePluginEntry, TARBALL_DIR, type UserPluginEntry} from './state.js'
import {readPackageTarball, tarballHas} from './tarball.js'
import {pluginRoot, sha256, vetPlugin} from './vet.js'

/** What a plugins command tells the user while it works. */
export interface PluginProgress {
  /** A slow step starts (shown as `cleanroom: <text>...`). */
  start(text: string): void
  stop(text: string): void
  /** Lines to show as they are (the preview). */
  show(lines: string[]): void
}

export interface PluginContext {
  /** The CLI's data dir, where plugins are installed. */
  dataDir: string
  /** The CLI's package name, for the data dir's package.json. */
  cliName: string
  /** The plugins that ship with cleanroom. */
  shipped: ReadonlySet<string>
  /** The agents cleanroom knows now. */
  registry: AgentRegistry
  hostHome: string
  progress: PluginProgress
  verbose: boolean
}

export interface AddOptions {
  allowCode: boolean
  replace: boolean
}

/** npm's settings for the data dir: every npm run there (plugins uninstall too) skips scripts and links no commands. */
const DATA_DIR_NPMRC = 'ignore-scripts=true\nbin-links=false\n'

/**
 * `cleanroom plugins install`: fetches the package with scripts off into a
 * private temp dir (fetchPackage), reads the tarball (refusing an ambiguous one), shows what
 * its agent asks for, refuses what the user did not allow (code, replacing an
 * agent), then installs that same tarball with scripts off and checks that
 * the package.json npm wrote is byte for byte the one shown. Nothing is
 * registered with oclif until that check passed.
 */
export async function installPlugin(context: PluginContext, source: PluginSource, options: AddOptions): Promise<InspectedPlugin> {
  const {progress} = context
  const scratch = await mkdtemp(join(tmpdir(), 'cleanroom-plugin-'))
  try {
    progress.start(`Fetching plugin ${source.label}`)
    const tarballPath = await fetchPackage(source, scratch, context.verbose)
    // npm pack wrote it just now, into a directory of our own: a failure to read it is about its content.
    const tarball = await readPackageTarball(tarballPath).catch((error: unknown) => {
      throw new CleanroomError('plugin_invalid', `${source.label} is refused: ${messageOf(error)}`, {
        suggestions: ['A plugin tarball holds one directory (package/, as npm pack makes it) with one package.json; repack it with npm pack.'],
      })
    })
    progress.stop('done')

    const plugin = inspectPlugin(tarball.packageJson, {label: source.label, hasFile: (path) => tarballHas(tarball, path), shipped: context.shipped, hostHome: context.hostHome})
    if (source.kind === 'npm' && plugin.name !== source.name) throw new CleanroomError('plugin_invalid', `the registry's ${source.label} calls itself ${plugin.name}`)
    progress.show(renderPreview(plugin))
    const previous = (await readPluginEntries(context.dataDir)).find((entry) => entry.name === plugin.name)
    const consent = admitPlugin(plugin, {...options, registry: context.registry, previous: previous?.cleanroom, retry: `cleanroom plugins install ${source.label}`})

    progress.start(`Installing plugin ${plugin.name}@${plugin.version}`)
    const entry: UserPluginEntry = source.kind === 'npm' ? {type: 'user', name: plugin.name, tag: source.tag} : {type: 'user', name: plugin.name, url: source.url}
    if (Object.keys(consent).length > 0) entry.cleanroom = consent
    await installTarball(context, plugin, entry, tarballPath)
    await savePluginEntry(context.dataDir, entry)
    await removeUnusedTarballs(context.dataDir)
    progress.stop(`installed v${plugin.version}`)
    return plugin
  } finally {
    await rm(scratch, {recursive: true, force: true})
  }
}

/**
 * The package as one tarball in `scratch`: a copy of a local tarball (what
 * `npm pack` would write for it too), else what `npm pack` fetches or packs
 * (registry, git, directory), scripts off.
 */
async function fetchPackage(source: PluginSource, scratch: string, verbose: boolean): Promise<string> {
  const local = source.kind === 'url' && source.spec.startsWith('file:') ? source.spec.slice('file:'.length) : undefined
  if (local !== undefined && (await stat(local).catch(() => undefined))?.isFile()) {
    const copy = join(scratch, 'package.tgz')
    await copyFile(local, copy)
    return copy
  }
  await runNpm(['pack', npmSpec(source), '--pack-destination', scratch, '--json'], {cwd: scratch, verbose})
  const packed = (await readdir(scratch)).filter((file) => file.endsWith('.tgz'))
  if (packed.length !== 1) throw new CleanroomError('plugin_install_failed', `npm pack ${npmSpec(source)} wrote ${packed.length} tarballs, expected one`)
  return join(scratch, packed[0]!)
}

/**
 * `npm install` of the fetched tarball into the data dir, from a copy kept
 * there (npm's lock file refers to it by path). Afterwards the data dir must
 * hold exactly one new package, under the name shown, whose package.json has
 * the bytes shown, and which cleanroom would load with the consent given;
 * otherwise whatever npm added is removed again.
 */
async function installTarball(context: PluginContext, plugin: InspectedPlugin, entry: UserPluginEntry, tarballPath: string): Promise<void> {
  const {dataDir} = context
  await ensureState(dataDir, context.cliName)
  await writeFile(join(dataDir, '.npmrc'), DATA_DIR_NPMRC)
  await mkdir(join(dataDir, TARBALL_DIR), {recursive: true})
  const kept = `${TARBALL_DIR}/${plugin.name.replace('/', '+')}-${sha256(await readFile(tarballPath)).slice(0, 16)}.tgz`
  await copyFile(tarballPath, join(dataDir, kept))

  const before = await installedDependencies(dataDir)
  await runNpm(['install', `file:${kept}`, '--omit', 'dev', '--save'], {cwd: dataDir, verbose: context.verbose})
  const added = Object.keys(await installedDependencies(dataDir)).filter((name) => !(name in before) || name === plugin.name)
  const written = await readFile(join(pluginRoot(entry, dataDir), 'package.json')).catch(() => undefined)
  const loadable = await vetPlugin(entry, dataDir, context.shipped)
  if (added.length === 1 && added[0] === plugin.name && written?.equals(plugin.packageJson) && loadable.ok && loadable.plugin.code.join() === plugin.code.join()) return

  // The earlier install of the same name (if any) was overwritten: it goes too, rather than stay unchecked.
  if (added.length > 0) await runNpm(['uninstall', ...added], {cwd: dataDir, verbose: context.verbose}).catch(() => undefined)
  await removePluginEntry(dataDir, plugin.name)
  throw new CleanroomError('plugin_install_failed', `npm installed something other than the ${plugin.name}@${plugin.version} shown above (added: ${added.join(', ') || 'nothing'}); it was removed again`, {
    suggestions: ['Report the plugin to its publisher: its tarball unpacks differently from how cleanroom read it.'],
  })
}

/** Tarballs kept for plugins that were uninstalled since (plugins uninstall leaves them). */
async function removeUnusedTarballs(dataDir: string): Promise<void> {
  const used = new Set(Object.values(await installedDependencies(dataDir)).map((spec) => spec.replace(/^file:/, '')))
  const kept = await readdir(join(dataDir, TARBALL_DIR)).catch(() => [])
  await Promise.all(kept.filter((file) => !used.has(`${TARBALL_DIR}/${file}`)).map((file) => rm(join(dataDir, TARBALL_DIR, file), {force: true})))
}
