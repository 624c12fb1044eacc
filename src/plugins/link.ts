import {existsSync} from 'node:fs'
import {realpath, stat} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {CleanroomError, messageOf} from '../errors/index.js'
import {admitPlugin, type InspectedPlugin, inspectPlugin} from './admit.js'
import type {AddOptions, PluginContext} from './install.js'
import {readPackageJsonFile} from './package-json.js'
import {renderPreview} from './preview.js'
import {ensureState, type LinkPluginEntry, readPluginEntries, savePluginEntry} from './state.js'

/**
 * `cleanroom plugins link <dir>`: the same preview and the same refusals as
 * `plugins install`, read from the directory's package.json, which is what
 * oclif will load. Nothing runs: no npm, no dependency install.
 */
export async function linkPlugin(context: PluginContext, path: string, cwd: string, options: AddOptions): Promise<InspectedPlugin> {
  const given = resolve(cwd, path)
  let root: string
  let packageJson: Buffer
  try {
    root = await realpath(given)
    if (!(await stat(root)).isDirectory()) throw new Error('not a directory')
    packageJson = await readPackageJsonFile(join(root, 'package.json'))
  } catch (error) {
    throw new CleanroomError('plugin_invalid', `cannot link ${given}: ${messageOf(error)}`, {
      suggestions: ['Give the directory of the plugin, the one holding its package.json.'],
    })
  }

  const plugin = inspectPlugin(packageJson, {label: given, hasFile: (file) => existsSync(join(root, file)), shipped: context.shipped, hostHome: context.hostHome})
  context.progress.show(renderPreview(plugin))
  const previous = (await readPluginEntries(context.dataDir)).find((entry) => entry.name === plugin.name)
  const consent = admitPlugin(plugin, {...options, registry: context.registry, previous: previous?.cleanroom, retry: `cleanroom plugins link ${given}`})

  const entry: LinkPluginEntry = {type: 'link', name: plugin.name, root}
  if (Object.keys(consent).length > 0) entry.cleanroom = consent
  await ensureState(context.dataDir, context.cliName)
  await savePluginEntry(context.dataDir, entry)
  return plugin
}
