import {Document, stringify} from 'yaml'

import type {AgentSpec} from '../agents/spec.js'
import {commentKey} from '../util/yaml-file.js'
import {type BackendName, DEFAULT_RUNTIME_CONFIG} from './schema.js'

/**
 * The commented `config.yaml` that `cleanroom config init` writes. Built with
 * the yaml Document API so every comment sits next to the setting it explains;
 * the built-in agents are shown commented out, ready to copy and edit.
 */
export function renderConfigTemplate(builtinAgents: readonly AgentSpec[], unavailableBackends: readonly BackendName[] = []): string {
  const doc = new Document(
    {
      default_backend: DEFAULT_RUNTIME_CONFIG.default_backend,
      backends: structuredClone(DEFAULT_RUNTIME_CONFIG.backends),
      egress: structuredClone(DEFAULT_RUNTIME_CONFIG.egress),
      agents: null,
    },
    {version: '1.2'},
  )
  doc.commentBefore = [
    ' cleanroom runtime config: settings of this machine, not of a repository.',
    ' The repository policy (what a sandbox may reach) lives in cleanroom.yaml.',
    ' Check this file with: cleanroom config validate',
  ].join('\n')

  const notYet = (name: BackendName) => (unavailableBackends.includes(name) ? '; not available yet in this cleanroom' : '')
  commentKey(doc, ['default_backend'], ` Backend for new sandboxes: linux-ns (bubblewrap) or gvisor (runsc, stronger isolation${notYet('gvisor')}).`)
  commentKey(doc, ['backends'], ' Settings of each backend.')
  commentKey(doc, ['backends', 'linux-ns'], ' Linux namespaces through bubblewrap (Debian package: bubblewrap).')
  commentKey(doc, ['backends', 'linux-ns', 'bwrap_path'], ' bwrap binary: a name looked up on PATH or an absolute path.')
  commentKey(doc, ['backends', 'gvisor'], ` gVisor user-space kernel (Debian package: runsc)${unavailableBackends.includes('gvisor') ? '. Not available yet in this cleanroom: its settings are kept for when it is' : ''}.`)
  commentKey(doc, ['backends', 'gvisor', 'runsc_path'], ' runsc binary: a name looked up on PATH or an absolute path.')
  commentKey(doc, ['backends', 'gvisor', 'platform'], ' systrap (works without KVM) or ptrace.')
  commentKey(doc, ['egress'], ' The egress proxy each sandbox reaches the network through.')
  commentKey(
    doc,
    ['egress', 'max_connections_per_sandbox'],
    " Connections one sandbox may hold open through its proxy; more are closed at once (the daemon's own limit, from its open-file limit, also applies).",
  )
  commentKey(doc,
    ['agents'],
    [
      ' Agents: custom agents and overrides of plugin agents, by name.',
      ' A field set here replaces the plugin\'s field (credentials, network and env as a whole).',
      ' The built-in agents\' defaults are shown below; uncomment a field to override it.',
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
