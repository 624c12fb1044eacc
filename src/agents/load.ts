import type {Interfaces} from '@oclif/core'

import {loadRuntimeConfig} from '../config/load.js'
import {buildAgentRegistry, type AgentRegistry, type PluginInfo} from './registry.js'

function pluginInfos(config: Interfaces.Config): PluginInfo[] {
  return config.getPluginsList().map((plugin) => ({
    name: plugin.name,
    version: plugin.version,
    type: plugin.type,
    pjson: plugin.pjson as Record<string, unknown>,
  }))
}

/** Every agent cleanroom knows: plugins from oclif, then the runtime config at `configPath`. */
export async function loadAgentRegistry(config: Interfaces.Config, configPath?: string): Promise<AgentRegistry> {
  const runtime = await loadRuntimeConfig(configPath)
  return buildAgentRegistry(pluginInfos(config), runtime.exists ? runtime : undefined)
}

/** Only the agents that ship with cleanroom, as the config template shows them. */
export function loadBuiltinAgents(config: Interfaces.Config): AgentRegistry {
  return buildAgentRegistry(pluginInfos(config).filter((plugin) => plugin.type === 'core'))
}
