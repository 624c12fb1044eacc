import {homedir} from 'node:os'

import {describeGateway} from '../credentials/spec.js'
import {type AgentRegistry, type AgentSource, describeSource, type RegisteredAgent, sourceLabel} from './registry.js'
import type {AgentSpec} from './spec.js'
import {agentWarnings, missingCredentialSources} from './warnings.js'

/** One row of `cleanroom agent list --json`. */
export type AgentListEntry = AgentSpec & {
  source: string
  source_detail: string
  /** Credential sources not found on this host (skipped when the agent starts). */
  missing_credentials: string[]
  /** What deserves a look before running it (see warnings.ts), and plugins that replaced another source's agent. */
  warnings: string[]
}

/** The registry's agents as listings show them: the spec with its source, short and in full, and what to look at. */
export function listEntries(registry: AgentRegistry, hostHome: string = homedir()): AgentListEntry[] {
  return [...registry.agents.values()].map((agent) => ({
    ...agent.spec,
    source: sourceLabel(agent.source),
    source_detail: describeSource(agent.source),
    missing_credentials: missingCredentialSources(agent.spec, hostHome),
    warnings: [...replacements(agent), ...agentWarnings(agent.spec, hostHome)],
  }))
}

/** A plugin that redefines an agent another plugin (or cleanroom) already provides; the runtime config is the user's own. */
function replacements(agent: RegisteredAgent): string[] {
  const plugins = agent.sources.filter((source): source is Exclude<AgentSource, {kind: 'config'}> => source.kind !== 'config')
  return plugins.slice(1).map((source, i) => `${describeSource(source)} replaces the ${agent.spec.name} agent of ${describeSource(plugins[i]!)}`)
}

/** The human listing of agents: a block per agent, aligned labels. */
export function renderAgentList(entries: readonly AgentListEntry[]): string {
  if (entries.length === 0) return 'no agents (install one with: cleanroom plugins install <name>)'
  return entries.map((entry) => renderAgent(entry)).join('\n\n')
}

function renderAgent(entry: AgentListEntry): string {
  const lines = [`${entry.name}  (${entry.source_detail})`]
  if (entry.description) lines.push(`  ${entry.description}`)
  lines.push(field('command', [entry.package ? `${entry.command}  (else npm package ${entry.package}@${entry.version ?? 'latest'})` : entry.command]))
  const mode = entry.credential_mode ?? (entry.gateway ? 'gateway' : 'copy')
  const missing = new Set(entry.missing_credentials)
  const copied = entry.credentials.filter((c) => mode === 'copy' || c.secret === false)
  const credentials = copied.map((c) => `${c.source} -> ${c.target}${c.transform ? ` (${c.transform})` : ''}${missing.has(c.source) ? '  (not on this host)' : ''}`)
  if (mode === 'copy' && credentials.length > 0 && missing.size === entry.credentials.length) credentials.push('none of these is on this host: log in inside the sandbox (docs/agents.md)')
  lines.push(field(mode === 'gateway' ? 'copies' : 'credentials', credentials))
  if (mode === 'gateway' && entry.gateway) {
    lines.push(field('gateway', describeGateway(entry.gateway)))
  } else if (mode === 'none') {
    lines.push(field('gateway', ['none (credentials: none)']))
  }
  const destinations = entry.network.map((need) => `${need.host}:${need.ports.join(',')}`)
  const width = Math.max(0, ...destinations.map((destination) => destination.length))
  const network = entry.network.map((need, i) => (need.reason ? `${destinations[i]!.padEnd(width)}  ${need.reason}` : destinations[i]!))
  lines.push(field('network', network))
  const env = Object.entries(entry.env).map(([name, value]) => `${name}=${value}`)
  if (env.length > 0) lines.push(field('env', env))
  if (entry.warnings.length > 0) lines.push(field('warnings', entry.warnings))
  return lines.join('\n')
}

const LABEL_WIDTH = 14

function field(label: string, values: readonly string[]): string {
  const head = `  ${`${label}:`.padEnd(LABEL_WIDTH)}`
  if (values.length === 0) return `${head}none`
  const indent = ' '.repeat(head.length)
  return values.map((value, i) => (i === 0 ? head : indent) + value).join('\n')
}

/** One line per agent for `cleanroom agent --help`. */
export function renderAgentSummary(entries: readonly AgentListEntry[]): string[] {
  const width = Math.max(...entries.map((entry) => entry.name.length))
  return entries.map((entry) => `${entry.name.padEnd(width)}  ${entry.source.padEnd(8)}  ${entry.description ?? entry.command}`)
}
