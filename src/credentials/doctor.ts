import {readFile} from 'node:fs/promises'

import type {AgentSpec} from '../agents/spec.js'
import {planAgentCredentials} from './grant.js'
import {expiresSoon, tokensInFile} from './logins.js'
import {SecretResolver} from './secrets.js'
import type {CredentialSettings} from './settings.js'

/** One agent's credential check, as `cleanroom doctor` prints it. */
export interface AgentCredentialCheck {
  name: string
  status: 'pass' | 'warn'
  detail: string
  fix?: string
}

/**
 * Which mode an agent's runs will use and what of its credentials this host
 * has: the keys its routes read (this environment, files), the logins it can
 * use (the auth file, and whether its access token has expired). Nothing is
 * sent anywhere and no command is run.
 */
export async function checkAgentCredentials(agent: AgentSpec, options: {settings: CredentialSettings; env: NodeJS.ProcessEnv; hostHome: string; trusted: boolean}): Promise<AgentCredentialCheck> {
  const name = `agent ${agent.name} credentials`
  const plan = planAgentCredentials(agent, options)
  if (plan.mode === 'none') return {name, status: 'pass', detail: 'none (credentials: none)'}
  if (plan.mode === 'copy') {
    const files = plan.copy.map((mapping) => mapping.source).join(', ')
    return {
      name,
      status: plan.copy.some((mapping) => mapping.secret !== false) ? 'warn' : 'pass',
      detail: files === '' ? 'copy mode: nothing to copy' : `copy mode: ${files} copied into the sandbox`,
      fix: agent.gateway ? `remove credentials: copy from agents.${agent.name} in config.yaml to use the credential gateway` : 'declare a gateway for the agent (docs/credentials.md) to keep its tokens out of the sandbox',
    }
  }
  const resolver = new SecretResolver()
  const found: string[] = []
  for (const route of plan.grant!.routes) {
    const source = await resolver.available(route.secret)
    if (source !== undefined) found.push(`route ${route.name} (${source})`)
  }
  const missingLogins: string[] = []
  for (const login of plan.grant!.logins) {
    const content = await readFile(login.host_file, 'utf8').then(
      (text) => JSON.parse(text) as unknown,
      () => undefined,
    )
    const tokens = content === undefined ? undefined : tokensInFile(login, content)
    if (tokens?.refresh === undefined && tokens?.access === undefined) {
      missingLogins.push(login.login_command)
      continue
    }
    const state = tokens.refresh === undefined && expiresSoon(tokens) ? 'its access token has expired and it has no refresh token' : expiresSoon(tokens) ? 'access token expired: refreshed on first use' : 'present'
    found.push(`login ${login.name} (${login.file}: ${state})`)
  }
  if (found.length > 0) return {name, status: 'pass', detail: `gateway: ${found.join('; ')}`}
  const keys = plan.grant!.routes.flatMap((route) => agent.gateway?.routes.find((declared) => declared.name === route.name)?.secret.flatMap((source) => ('env' in source ? [source.env] : [])) ?? [])
  const ways = [...(keys.length > 0 ? [`set ${keys.join(' or ')}`] : []), ...missingLogins.map((command) => `run \`${command}\` on the host`)]
  return {name, status: 'warn', detail: 'gateway: no key or login on this host (the agent can still log in inside its sandbox)', ...(ways.length > 0 && {fix: ways.join(', or ')})}
}
