import type {Hook} from '@oclif/core'

import {buildAgentRegistry} from '../agents/registry.js'
import type {AgentSpec} from '../agents/spec.js'
import {type PluginInstallTarget, readPluginManifest} from './plugin-manifest.js'

/**
 * Before `cleanroom plugins install` runs npm: shows on stderr what the plugin's
 * agent will be allowed to reach and which credential files it will copy, read
 * from its package.json without running it. Never stops the install: an invalid
 * spec is a warning (the registry skips it later), an unreadable one a note.
 */
const hook: Hook<'plugins:preinstall'> = async function (options) {
  const target = options.plugin as PluginInstallTarget
  const label = target.type === 'npm' ? `${target.name}@${target.tag}` : target.url
  const say = (line: string) => process.stderr.write(`cleanroom: ${line}\n`)

  const read = await readPluginManifest(target)
  if ('unreadable' in read) {
    say(`cannot show what ${label} asks for before installing (${read.unreadable}); check it afterwards with: cleanroom agent list`)
    return
  }
  const {manifest} = read
  if (manifest.cleanroom === undefined) {
    say(`${label} declares no agent (no cleanroom.agent block in its package.json)`)
    return
  }
  const name = typeof manifest.name === 'string' ? manifest.name : label
  const version = typeof manifest.version === 'string' ? manifest.version : target.type === 'npm' ? target.tag : 'unknown'
  // The same validation the registry applies once the plugin is installed.
  const registry = buildAgentRegistry([{name, version, type: 'user', pjson: manifest}])
  for (const warning of registry.warnings) this.warn(`${warning}. It is installed anyway; cleanroom agent will not offer it until the plugin is fixed.`)
  for (const {spec} of registry.agents.values()) for (const line of describeNeeds(`${name}@${version}`, spec)) say(line)
}

/** The lines shown for one agent: what it may reach and what it copies from the user's home. */
export function describeNeeds(plugin: string, spec: AgentSpec): string[] {
  const reach = spec.network.map((need) => `${need.host}:${need.ports.join(',')}${need.reason ? ` (${need.reason})` : ''}`)
  const copies = spec.credentials.map((mapping) => `${mapping.source} -> ${mapping.target}`)
  return [
    `plugin ${plugin} adds agent "${spec.name}"`,
    `  ${spec.name} may reach: ${reach.length > 0 ? reach.join(', ') : 'nothing beyond the policy'}`,
    `  ${spec.name} copies from your home: ${copies.length > 0 ? copies.join(', ') : 'nothing'}`,
  ]
}

export default hook
