import {Document, stringify} from 'yaml'

import type {AgentSpec} from '../agents/spec.js'
import {BACKEND_DESCRIPTORS} from '../sandbox/backends/descriptors.js'
import {commentKey} from '../util/yaml-file.js'
import {BACKENDS, DEFAULT_RUNTIME_CONFIG} from './schema.js'
import type {Setting} from './settings.js'

/**
 * The commented `config.yaml` that `cleanroom config init` writes. Built with
 * the yaml Document API so every comment sits next to the setting it explains;
 * the built-in agents are shown commented out, ready to copy and edit.
 */
export function renderConfigTemplate(builtinAgents: readonly AgentSpec[]): string {
  const doc = new Document(
    {
      default_backend: DEFAULT_RUNTIME_CONFIG.default_backend,
      backends: Object.fromEntries(BACKENDS.map((name) => [name, settingsAsShown(BACKEND_DESCRIPTORS[name].settings, DEFAULT_RUNTIME_CONFIG.backends[name])])),
      egress: structuredClone(DEFAULT_RUNTIME_CONFIG.egress),
      credentials: {write_back: DEFAULT_RUNTIME_CONFIG.credentials.write_back, grant: null, routes: null},
      registries: null,
      agents: null,
    },
    {version: '1.2'},
  )
  doc.commentBefore = [
    ' cleanroom runtime config: settings of this machine, not of a repository.',
    ' The repository policy (what a sandbox may reach) lives in cleanroom.yaml.',
    ' Check this file with: cleanroom config validate',
  ].join('\n')

  commentKey(doc, ['default_backend'], ' Backend for new sandboxes: linux-ns (bubblewrap) or gvisor (runsc, stronger isolation: docs/backends.md).')
  commentKey(
    doc,
    ['egress', 'audit_failure'],
    [
      ' When a sandbox\'s egress audit log cannot be written (a full disk): deny refuses every connection out',
      ' (reason audit_unavailable) until it can be written again; allow lets them through unlogged.',
      ' Either way the failure is in the daemon log and in cleanroom sandbox inspect.',
    ].join('\n'),
  )
  commentKey(doc, ['backends'], ' Settings of each backend.')
  for (const name of BACKENDS) {
    const {summary, settings} = BACKEND_DESCRIPTORS[name]
    commentKey(doc, ['backends', name], ` ${summary}`)
    for (const [key, setting] of Object.entries(settings) as [string, Setting<unknown>][]) {
      commentKey(doc, ['backends', name, key], commentText(setting.description))
      for (const [inner, note] of Object.entries(setting.notes ?? {})) commentKey(doc, ['backends', name, key, inner], commentText(note))
    }
  }
  commentKey(doc, ['egress'], ' The egress proxy each sandbox reaches the network through.')
  commentKey(
    doc,
    ['egress', 'max_connections_per_sandbox'],
    " Connections one sandbox may hold open through its proxy; more are closed at once (the daemon's own limit, from its open-file limit, also applies).",
  )
  commentKey(doc,
    ['registries'],
    [
      ' Image registries (cleanroom image pull), by host. Secrets are never written here:',
      ' name the environment variable of the cleanroom command that holds them.',
      ' Plain HTTP only for registries on loopback or marked insecure: true; HTTPS for the rest.',
    ].join('\n'),
  )
  commentKey(doc,
    ['agents'],
    [
      '  ghcr.io:',
      '    username: me',
      '    password_env: GHCR_TOKEN',
      '  registry.internal:5000:',
      '    insecure: true',
      '',
      ' Agents: custom agents and overrides of plugin agents, by name.',
      ' A field set here replaces the plugin\'s field (credentials, network and env as a whole).',
      ' credentials: copy copies an agent\'s credential files into its sandboxes instead of using the',
      ' credential gateway (credentials: gateway, the default), with a warning each run.',
      ' The built-in agents\' defaults are shown below; uncomment a field to override it.',
    ].join('\n'),
  )

  commentKey(doc, ['credentials'], ' Credentials: how agents use your keys and logins without them entering a sandbox (docs/credentials.md).')
  commentKey(doc, ['credentials', 'write_back'], ' Refreshed OAuth tokens are written back to the host\'s auth file (~/.codex/auth.json, …), so the agent\'s own CLI on the host stays logged in.')
  commentKey(doc, ['credentials', 'grant'], ' Routes a repository\'s cleanroom.yaml (sandbox.credentials) or an installed agent plugin may use, by name.')
  commentKey(doc,
    ['credentials', 'routes'],
    [
      ' Routes defined here, and changes to an agent\'s route of the same name (e.g. anthropic: {upstream: https://llm-gateway.example}).',
      ' For example, GitHub\'s API with the token of your gh login, fetched when first used and kept 15 minutes:',
      '   github:',
      '     upstream: https://api.github.com',
      '     header: authorization',
      '     format: Bearer {}',
      '     secret: {command: [gh, auth, token], ttl_seconds: 900}',
      '     env: {GH_TOKEN: "{phantom}", GH_HOST: github.com}',
    ].join('\n'),
  )

  const examples = builtinAgents.map((agent) => agentExample(agent)).join('\n\n')
  if (examples !== '') doc.comment = examples
  return doc.toString({lineWidth: 0, nullStr: ''})
}

/** A backend's settings as config.yaml writes them. */
function settingsAsShown(schema: Record<string, Setting<unknown>>, values: object): Record<string, unknown> {
  return Object.fromEntries(Object.entries(values as Record<string, unknown>).map(([key, value]) => [key, schema[key]?.shown?.(value) ?? structuredClone(value)]))
}

/** A comment of one or more lines, each led by a space after the `#`. */
function commentText(text: string): string {
  return text
    .split('\n')
    .map((line) => ` ${line}`)
    .join('\n')
}

/** One agent's fields as YAML indented under `agents:`, each line ready to uncomment; empty fields left out. */
function agentExample(agent: AgentSpec): string {
  const {name, description, command, test, install, credentials, network, env} = agent
  const fields: Record<string, unknown> = {description, command, package: agent.package, test, install}
  if (credentials.length > 0) fields.credentials = credentials
  if (network.length > 0) fields.network = network
  if (Object.keys(env).length > 0) fields.env = env
  const body = stringify({[name]: fields}, {lineWidth: 0}).trimEnd()
  return body
    .split('\n')
    .map((line) => `  ${line}`)
    .join('\n')
}
