import {CleanroomError} from '../errors/index.js'
import {formatPath} from '../util/yaml-file.js'
import {isRecord} from '../util/record.js'
import type {RuntimeConfig} from '../config/schema.js'
import type {AgentSpec, AgentSpecInput} from './spec.js'
import {agentNameProblem, completeAgentSpec, mergeAgentInputs, parseAgentInput} from './validate.js'

/** What the registry needs of an oclif plugin (a subset of `Interfaces.Plugin`). */
export interface PluginInfo {
  name: string
  version: string
  /** oclif's plugin type: `core` plugins ship with cleanroom, `user` are installed, `link` are linked. */
  type: string
  pjson: Record<string, unknown>
}

export type AgentSource =
  | {kind: 'builtin'; plugin: string; version: string}
  | {kind: 'plugin'; plugin: string; version: string; linked: boolean}
  | {kind: 'config'; path: string}

export interface RegisteredAgent {
  spec: AgentSpec
  /** The source that declared the agent last (and so won where fields overlap). */
  source: AgentSource
  /** Every source that contributed, earliest first. */
  sources: AgentSource[]
}

export interface AgentRegistry {
  agents: Map<string, RegisteredAgent>
  /** Problems that made a source's agent be skipped; shown, never fatal. */
  warnings: string[]
}

interface Layer {
  source: AgentSource
  name: string
  input: AgentSpecInput
}

const TIER: Record<AgentSource['kind'], number> = {builtin: 0, plugin: 1, config: 2}

/**
 * Merges the agents of built-in plugins, then installed or linked plugins,
 * then the runtime config's `agents:` map. A later source overrides an
 * earlier one by name, field by field. An invalid declaration is skipped
 * with a warning naming its source, so one broken plugin cannot break the CLI.
 */
export function buildAgentRegistry(plugins: readonly PluginInfo[], config?: {path: string; config: RuntimeConfig}): AgentRegistry {
  const warnings: string[] = []
  const layers: Layer[] = []

  for (const plugin of plugins) {
    const layer = pluginLayer(plugin, warnings)
    if (layer) layers.push(layer)
  }
  if (config) {
    for (const [name, input] of Object.entries(config.config.agents)) {
      layers.push({source: {kind: 'config', path: config.path}, name, input})
    }
  }

  // Stable sort: within a tier, plugins keep oclif's load order.
  layers.sort((a, b) => TIER[a.source.kind] - TIER[b.source.kind])

  const merged = new Map<string, {input: AgentSpecInput; sources: AgentSource[]}>()
  for (const layer of layers) {
    const previous = merged.get(layer.name)
    if (previous) {
      const last = previous.sources.at(-1)
      if (last && last.kind !== 'config' && last.kind === layer.source.kind) {
        warnings.push(`agent ${layer.name} is declared by both ${describeSource(last)} and ${describeSource(layer.source)}; using ${describeSource(layer.source)}`)
      }
      previous.input = mergeAgentInputs(previous.input, layer.input)
      previous.sources.push(layer.source)
    } else {
      merged.set(layer.name, {input: layer.input, sources: [layer.source]})
    }
  }

  const agents = new Map<string, RegisteredAgent>()
  for (const name of [...merged.keys()].sort()) {
    const {input, sources} = merged.get(name)!
    agents.set(name, {spec: completeAgentSpec(name, input), source: sources.at(-1)!, sources})
    if (input.version !== undefined && input.package === undefined) warnings.push(`agent ${name} sets version ${input.version} but has no package: the version is ignored`)
  }
  return {agents, warnings}
}

function pluginLayer(plugin: PluginInfo, warnings: string[]): Layer | undefined {
  if (plugin.pjson.cleanroom === undefined) return undefined
  const checked = validatePluginAgent(plugin)
  if (checked instanceof CleanroomError) {
    warnings.push(checked.message)
    return undefined
  }
  const source: AgentSource =
    plugin.type === 'core'
      ? {kind: 'builtin', plugin: plugin.name, version: plugin.version}
      : {kind: 'plugin', plugin: plugin.name, version: plugin.version, linked: plugin.type === 'link'}
  return {source, ...checked}
}

/** At most this many problems of one plugin are listed; a broken plugin must not flood the terminal. */
const MAX_PLUGIN_PROBLEMS = 10

/**
 * The agent a plugin's package.json declares in its `cleanroom.agent` block,
 * or agent_spec_invalid naming the plugin and each field that is wrong.
 */
export function validatePluginAgent(plugin: PluginInfo): {name: string; input: AgentSpecInput} | CleanroomError {
  const block = plugin.pjson.cleanroom
  const issues: {path: string; message: string}[] = []
  let more = 0
  const report = (path: (number | string)[], message: string) => {
    if (issues.length < MAX_PLUGIN_PROBLEMS) issues.push({path: formatPath(path), message})
    else more++
  }
  let name: string | undefined
  let input: AgentSpecInput | undefined

  if (!isRecord(block) || !isRecord(block.agent)) {
    report(['cleanroom', 'agent'], 'must be a mapping of agent fields')
  } else {
    const declared = block.agent.name
    if (typeof declared !== 'string') {
      report(['cleanroom', 'agent', 'name'], 'is required')
    } else {
      const nameProblem = agentNameProblem(declared)
      if (nameProblem) report(['cleanroom', 'agent', 'name'], nameProblem)
      else name = declared
    }
    const unknownTop = Object.keys(block).filter((key) => key !== 'agent')
    for (const key of unknownTop.slice(0, MAX_PLUGIN_PROBLEMS)) report(['cleanroom', key], 'unknown key (expected: agent)')
    more += Math.max(0, unknownTop.length - MAX_PLUGIN_PROBLEMS)
    input = parseAgentInput(block.agent, ['cleanroom', 'agent'], report)
  }

  if (issues.length === 0 && name !== undefined && input !== undefined) return {name, input}
  const listed = issues.map((issue) => `${issue.path}: ${issue.message}`).join('; ')
  const label = `${String(plugin.name).slice(0, 214)}@${String(plugin.version).slice(0, 64)}`
  return new CleanroomError('agent_spec_invalid', `plugin ${label} declares an invalid agent and is skipped: ${listed}${more > 0 ? ` (and ${more} more)` : ''}`, {
    details: {plugin: plugin.name, version: plugin.version, issues},
    suggestions: [`Fix the cleanroom.agent block of ${plugin.name}'s package.json, or remove the plugin: cleanroom plugins uninstall ${plugin.name}`],
  })
}

export function describeSource(source: AgentSource): string {
  switch (source.kind) {
    case 'builtin': {
      return `built-in plugin ${source.plugin}`
    }
    case 'plugin': {
      return `${source.linked ? 'linked' : 'installed'} plugin ${source.plugin}@${source.version}`
    }
    case 'config': {
      return `runtime config ${source.path}`
    }
  }
}

/** A short label for listings: built-in, plugin, linked or config. */
export function sourceLabel(source: AgentSource): string {
  if (source.kind === 'plugin') return source.linked ? 'linked' : 'plugin'
  return source.kind === 'builtin' ? 'built-in' : 'config'
}
