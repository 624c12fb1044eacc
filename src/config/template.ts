import {Document, stringify} from 'yaml'

import type {AgentSpec} from '../agents/spec.js'
import {commentKey} from '../util/yaml-file.js'
import {DEFAULT_RUNTIME_CONFIG} from './schema.js'

/**
 * The commented `config.yaml` that `cleanroom config init` writes. Built with
 * the yaml Document API so every comment sits next to the setting it explains;
 * the built-in agents are shown commented out, ready to copy and edit.
 */
export function renderConfigTemplate(builtinAgents: readonly AgentSpec[]): string {
  const doc = new Document(
    {
      default_backend: DEFAULT_RUNTIME_CONFIG.default_backend,
      backends: structuredClone(DEFAULT_RUNTIME_CONFIG.backends),
      credentials: {write_back: DEFAULT_RUNTIME_CONFIG.credentials.write_back, grant: null, routes: null},
      agents: null,
    },
    {version: '1.2'},
  )
  doc.commentBefore = [
    ' cleanroom runtime config: settings of this machine, not of a repository.',
    ' The repository policy (what a sandbox may reach) lives in cleanroom.yaml.',
    ' Check this file with: cleanroom config validate',
  ].join('\n')

  commentKey(doc, ['default_backend'], ' Backend for new sandboxes: linux-ns (bubblewrap) or gvisor (runsc, stronger isolation).')
  commentKey(doc, ['backends'], ' Settings of each backend.')
  commentKey(doc, ['backends', 'linux-ns'], ' Linux namespaces through bubblewrap (Debian package: bubblewrap).')
  commentKey(doc, ['backends', 'linux-ns', 'bwrap_path'], ' bwrap binary: a name looked up on PATH or an absolute path.')
  commentKey(doc, ['backends', 'gvisor'], ' gVisor user-space kernel (Debian package: runsc).')
  commentKey(doc, ['backends', 'gvisor', 'runsc_path'], ' runsc binary: a name looked up on PATH or an absolute path.')
  commentKey(doc, ['backends', 'gvisor', 'platform'], ' systrap (works without KVM) or ptrace.')
  commentKey(doc,
    ['agents'],
    [
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
