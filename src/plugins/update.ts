import type {InspectedPlugin} from './admit.js'
import {type AddOptions, installPlugin, type PluginContext} from './install.js'
import {parsePluginSource, type PluginSource} from './source.js'
import {readPluginEntries} from './state.js'

/**
 * `cleanroom plugins update`: each installed plugin is installed again from
 * the source it was installed from, through the same fetch, preview and
 * checks as `plugins install`. A new version that declares code, or takes an
 * agent name it did not have before, needs the flag again. Linked plugins
 * are their directories and have nothing to update.
 */
export async function updatePlugins(context: PluginContext, cwd: string, options: AddOptions): Promise<InspectedPlugin[]> {
  const updated: InspectedPlugin[] = []
  for (const entry of await readPluginEntries(context.dataDir)) {
    if (entry.type !== 'user') continue
    const source: PluginSource = entry.url
      ? await parsePluginSource(entry.url, {cwd})
      : {kind: 'npm', name: entry.name, tag: entry.tag ?? 'latest', label: `${entry.name}@${entry.tag ?? 'latest'}`}
    updated.push(await installPlugin(context, source, options))
  }
  return updated
}
