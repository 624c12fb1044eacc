import {buildAgentRegistry, describeSource, type AgentRegistry} from '../agents/registry.js'
import type {AgentSpec} from '../agents/spec.js'
import {agentWarnings} from '../agents/warnings.js'
import {CleanroomError, messageOf} from '../errors/index.js'
import {parsePackageJsonBytes} from './package-json.js'
import {codeEntries, installScripts, notAPluginProblem} from './code.js'
import type {PluginConsent} from './state.js'
import {pluginNameProblem, sha256} from './vet.js'

/** A plugin about to be installed or linked, read from the exact package.json that will be used. */
export interface InspectedPlugin {
  name: string
  version: string
  /** The package.json's bytes: what the preview was built from and what must be installed. */
  packageJson: Buffer
  pjson: Record<string, unknown>
  /** The agents it adds, validated as the registry will once it is added. */
  agents: AgentSpec[]
  /** Why its agent is skipped (an invalid spec); it is still added. */
  invalid: string[]
  /** Credential sources and destinations worth a look (agents/warnings.ts). */
  warnings: string[]
  /** Declarations of code (code.ts); refused without --allow-code. */
  code: string[]
  /** Install scripts it declares, which never run. */
  scripts: string[]
}

export interface InspectOptions {
  /** How the user named it, for messages. */
  label: string
  /** Answers whether a path exists in the package, relative to its root. */
  hasFile: (path: string) => boolean
  /** Plugins that ship with cleanroom, whose names a plugin may not take. */
  shipped: ReadonlySet<string>
  hostHome: string
}

/**
 * Reads a plugin from its package.json bytes, without running anything of it.
 * Throws `plugin_invalid` when it cannot be an agent plugin at all.
 */
export function inspectPlugin(packageJson: Buffer, options: InspectOptions): InspectedPlugin {
  let pjson: Record<string, unknown>
  try {
    pjson = parsePackageJsonBytes(packageJson)
  } catch (error) {
    throw invalid(`${options.label} has no usable package.json: ${messageOf(error)}`)
  }
  if (typeof pjson.name !== 'string') throw invalid(`${options.label} has no "name" in its package.json`)
  const {name} = pjson
  const nameProblem = pluginNameProblem(name, options.shipped)
  if (nameProblem) throw invalid(`${options.label} cannot be added: ${nameProblem}`)
  const version = typeof pjson.version === 'string' ? pjson.version : '0.0.0'
  const notAPlugin = notAPluginProblem(pjson)
  if (notAPlugin) throw invalid(`${name}@${version} (${options.label}) is not a cleanroom agent plugin: ${notAPlugin}`)

  // The same validation the registry applies once the plugin is added.
  const registry = buildAgentRegistry([{name, version, type: 'user', pjson}])
  const agents = [...registry.agents.values()].map((agent) => agent.spec)
  return {
    name,
    version,
    packageJson,
    pjson,
    agents,
    invalid: registry.warnings,
    warnings: agents.flatMap((spec) => agentWarnings(spec, options.hostHome)),
    code: codeEntries(pjson, options.hasFile),
    scripts: installScripts(pjson, options.hasFile),
  }
}

export interface AdmitOptions {
  allowCode: boolean
  replace: boolean
  /** The agents cleanroom knows now (built-in, installed and linked plugins, runtime config). */
  registry: AgentRegistry
  /** What the user allowed an earlier install of the same plugin. */
  previous?: PluginConsent
  /** The command to repeat with the flag that is missing. */
  retry: string
}

/**
 * Whether the user allowed what the plugin asks for beyond being data: running
 * code needs --allow-code (or an earlier one for the same package.json),
 * taking over an agent name that another source already provides needs
 * --replace (or an earlier one for that name).
 * Returns what to record; throws `plugin_runs_code` or `agent_exists`.
 */
export function admitPlugin(plugin: InspectedPlugin, options: AdmitOptions): PluginConsent {
  const consent: PluginConsent = {}
  if (plugin.code.length > 0) {
    const digest = sha256(plugin.packageJson)
    // Reinstalling the very package.json whose code was allowed before needs no new consent.
    if (!options.allowCode && options.previous?.allow_code?.package_json_sha256 !== digest) {
      throw new CleanroomError('plugin_runs_code', `${plugin.name}@${plugin.version} is not data: it declares code that cleanroom would run (${plugin.code.join('; ')})`, {
        suggestions: [
          'cleanroom agent plugins are data: a package.json with "oclif": {} and a "cleanroom": {"agent": {…}} block (docs/agents.md).',
          `If you trust its code to run with your user's rights on every cleanroom command: ${options.retry} --allow-code`,
        ],
        details: {plugin: plugin.name, version: plugin.version, code: plugin.code},
      })
    }
    consent.allow_code = {package_json_sha256: digest}
  }

  const replaces: string[] = []
  for (const spec of plugin.agents) {
    const existing = options.registry.agents.get(spec.name)
    const others = (existing?.sources ?? []).filter((source) => !(source.kind === 'plugin' && source.plugin === plugin.name))
    if (others.length === 0) continue
    if (!options.replace && !(options.previous?.replaces ?? []).includes(spec.name)) {
      const from = others.map((source) => describeSource(source)).join(' and ')
      throw new CleanroomError('agent_exists', `${plugin.name}@${plugin.version} adds agent "${spec.name}", which already exists: the ${spec.name} agent of ${from}`, {
        suggestions: [`To let ${plugin.name} replace it (its command, credentials and network above then apply to ${spec.name}): ${options.retry} --replace`],
        details: {plugin: plugin.name, agent: spec.name, existing: others},
      })
    }
    replaces.push(spec.name)
  }
  if (replaces.length > 0) consent.replaces = replaces
  return consent
}

function invalid(message: string): CleanroomError {
  return new CleanroomError('plugin_invalid', message, {
    suggestions: ['An agent plugin is an npm package whose package.json has "oclif": {} and a "cleanroom": {"agent": {…}} block, and nothing else to run (docs/agents.md).'],
  })
}
