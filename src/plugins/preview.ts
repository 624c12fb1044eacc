import type {AgentSpec} from '../agents/spec.js'
import {describeGateway} from '../credentials/spec.js'
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

/**
 * The lines shown for one agent: what it may reach, which host files it copies
 * in (with a gateway, those holding a secret only in copy mode), and its
 * gateway's routes and logins, which an installed plugin gets only once granted.
 */
export function describeNeeds(plugin: string, spec: AgentSpec): string[] {
  const reach = spec.network.map((need) => `${need.host}:${need.ports.join(',')}${need.reason ? ` (${need.reason})` : ''}`)
  const mapped = (mappings: AgentSpec['credentials']) => mappings.map((mapping) => `${mapping.source} -> ${mapping.target}`)
  const copies = mapped(spec.gateway ? spec.credentials.filter((mapping) => mapping.secret === false) : spec.credentials)
  const lines = [
    `plugin ${plugin} adds agent "${spec.name}"`,
    `  ${spec.name} may reach: ${reach.length > 0 ? reach.join(', ') : 'nothing beyond the policy'}`,
    `  ${spec.name} copies into its sandbox: ${copies.length > 0 ? copies.join(', ') : 'nothing'}`,
  ]
  if (spec.gateway === undefined) return lines
  const secrets = mapped(spec.credentials.filter((mapping) => mapping.secret !== false))
  if (secrets.length > 0) lines.push(`  ${spec.name} copies only in copy mode (credentials: copy in config.yaml): ${secrets.join(', ')}`)
  for (const line of describeGateway(spec.gateway)) lines.push(`  ${spec.name} gateway ${line}, used once its name is in credentials.grant of config.yaml`)
  return lines
}
