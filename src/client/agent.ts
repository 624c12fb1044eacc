import {homedir} from 'node:os'
import {Readable} from 'node:stream'

import {SANDBOX_HOME} from '../agents/credential-paths.js'
import {packCredentials} from '../agents/credentials.js'
import {QUIET_NPM_ENV} from '../agents/npm-env.js'
import {buildAgentScript} from '../agents/script.js'
import type {AgentSpec} from '../agents/spec.js'
import {loadRuntimeConfig} from '../config/load.js'
import type {BackendName} from '../config/schema.js'
import {planAgentCredentials, renderGrant} from '../credentials/grant.js'
import {agentPackageFor} from './agent-package.js'
import type {DaemonClient} from './client.js'
import {createSandboxForRepo, defaultBackend, refuseNewSandboxFlags} from './create.js'
import {watchDenials} from './egress-denials.js'
import {type ExecOutcome, runInSandbox, type Terminal, terminalSize} from './exec.js'
import {agentMissingFromImage} from './image.js'

export interface AgentRunOptions {
  agent: AgentSpec
  /** What followed the agent's name, as typed (the script drops one leading `--`). */
  args: string[]
  sandboxId?: string
  dir?: string
  /** `--backend` for a new sandbox; undefined: the runtime config's default. */
  backend?: BackendName
  allowAll: boolean
  /** `--update`: ask the registry for the agent's release now, not at most once a day. */
  update?: boolean
  terminal: Terminal
  /** Where `~` in a credential source points (the user's home). */
  hostHome?: string
  /**
   * The agent's gateway comes only from built-in plugins and the runtime
   * config; an installed plugin's routes and logins need credentials.grant.
   */
  trustedGateway: boolean
  /** Where `env` secret sources are read: the environment of this command. */
  env?: NodeJS.ProcessEnv
}

/**
 * `cleanroom agent <name>`: a new sandbox from the repository's policy plus the
 * agent's network needs, with the agent's package from the shared agent cache
 * mounted read-only (or an existing sandbox, whose policy is left alone), the
 * agent's credentials given through the sandbox's credential gateway (or its
 * files copied in, in copy mode), then the agent run with the user's arguments.
 * A new sandbox is kept, and its id printed, so the session can be picked up again;
 * one whose agent never started is removed.
 */
export async function runAgent(client: DaemonClient, options: AgentRunOptions): Promise<ExecOutcome & {sandboxId: string}> {
  const {agent, terminal} = options
  const say = (line: string) => terminal.stderr.write(`cleanroom: ${line}\n`)
  refuseNewSandboxFlags(options)

  let sandboxId = options.sandboxId
  if (sandboxId === undefined) {
    const needs = agent.network.map((need) => `${need.host}:${need.ports.join(',')}`)
    say(`${agent.name} may reach: ${needs.length > 0 ? needs.join(', ') : 'nothing beyond the policy'}`)
    const backend = options.backend ?? (await defaultBackend())
    const agentPackage = await agentPackageFor(client, agent, {update: options.update === true, backend, say})
    const sandbox = await createSandboxForRepo(client, {
      dir: options.dir ?? process.cwd(),
      backend,
      allowAll: options.allowAll,
      extraAllow: agent.network,
      ...(agentPackage === undefined ? {} : {agentPackage}),
      notice: say,
    })
    sandboxId = sandbox.sandbox_id
  }

  const created = options.sandboxId === undefined
  let started = false
  const tty = terminal.stdin.isTTY === true && terminal.stdout.isTTY === true
  const denials = watchDenials(client, sandboxId, {since: new Date(), live: !tty, say})
  try {
    const hostHome = options.hostHome ?? homedir()
    const {config} = await loadRuntimeConfig()
    const plan = planAgentCredentials(agent, {settings: config.credentials, env: options.env ?? process.env, hostHome, trusted: options.trustedGateway})
    for (const notice of plan.notices) say(notice)
    // Copied on every start: the host's files may have changed since the last one.
    const archive = await packCredentials(plan.copy, {hostHome, uid: 1000, gid: 1000, sandboxHome: SANDBOX_HOME})
    for (const warning of archive.warnings) say(`warning: ${warning}`)
    if (archive.files.length > 0) await client.putArchive(sandboxId, SANDBOX_HOME, Readable.from([archive.tar]))
    // Granted on every start too: keys in this environment may be new, and the host login may have changed.
    let args = options.args
    if (plan.grant) {
      const summary = await client.grantCredentials(sandboxId, plan.grant)
      for (const line of renderGrant(agent.name, summary)) say(line)
      // The routes' arguments go first; the one leading `--` the script drops stays in front of them.
      if (summary.args.length > 0) args = args[0] === '--' ? ['--', ...summary.args, ...args.slice(1)] : [...summary.args, ...args]
    }

    const env: Record<string, string> = {...QUIET_NPM_ENV, ...agent.env}
    if (tty) env.TERM = process.env.TERM ?? 'xterm-256color'
    const request = {argv: ['sh', '-lc', buildAgentScript(agent, args)], env, tty, ...(tty ? terminalSize(terminal.stdout) : {})}
    const outcome = await runInSandbox(client, sandboxId, request, terminal, () => {
      started = true
    })
    const missing = outcome.exitCode === 127 ? await agentMissingFromImage(client, sandboxId, agent.name) : undefined
    if (missing !== undefined) say(missing)
    return {...outcome, sandboxId}
  } catch (error) {
    // A sandbox made for a run that never started its agent is of no use to anyone.
    if (created && !started) await client.removeSandbox(sandboxId).catch(() => undefined)
    throw error
  } finally {
    await denials.finish()
    if (created && started) terminal.stderr.write(`sandbox_id=${sandboxId}\n`)
  }
}
