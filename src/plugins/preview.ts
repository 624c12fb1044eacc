import type {AgentSpec} from '../agents/spec.js'
import type {InspectedPlugin} from './admit.js'

/**
 * What `plugins install|link` shows before adding a plugin, one line each
 * (printed on stderr with a `cleanroom: ` prefix): the agents it adds with the
 * hosts they may reach and the files they copy, then what deserves a look.
 */
export function renderPreview(plugin: InspectedPlugin): string[] {
  const label = `${plugin.name}@${plugin.version}`
  const lines: string[] = []
  if (plugin.agents.length === 0 && plugin.invalid.length === 0) lines.push(`plugin ${label} declares no agent (no cleanroom.agent block in its package.json)`)
  for (const spec of plugin.agents) lines.push(...describeNeeds(label, spec))
  for (const problem of plugin.invalid) lines.push(`warning: ${problem}. It is added anyway; cleanroom agent will not offer it until the plugin is fixed.`)
  for (const warning of plugin.warnings) lines.push(`  warning: ${warning}`)
  if (plugin.code.length > 0) lines.push(`  warning: ${label} runs code in cleanroom: ${plugin.code.join('; ')}`)
  if (plugin.scripts.length > 0) lines.push(`  ${label}'s install scripts are not run: ${plugin.scripts.join(', ')}`)
  return lines
}

/** The lines shown for one agent: what it may reach and which host files it copies in. */
export function describeNeeds(plugin: string, spec: AgentSpec): string[] {
  const reach = spec.network.map((need) => `${need.host}:${need.ports.join(',')}${need.reason ? ` (${need.reason})` : ''}`)
  const copies = spec.credentials.map((mapping) => `${mapping.source} -> ${mapping.target}`)
  return [
    `plugin ${plugin} adds agent "${spec.name}"`,
    `  ${spec.name} may reach: ${reach.length > 0 ? reach.join(', ') : 'nothing beyond the policy'}`,
    `  ${spec.name} copies into its sandbox: ${copies.length > 0 ? copies.join(', ') : 'nothing'}`,
  ]
}
