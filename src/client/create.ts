import {resolve} from 'node:path'

import {homedir} from 'node:os'

import {loadRuntimeConfig} from '../config/load.js'
import {planRequestedCredentials, renderGrant} from '../credentials/grant.js'
import type {BackendName} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {noPolicyNotice} from '../policy/notice.js'
import type {AllowRuleInput} from '../policy/schema.js'
import type {DaemonClient, PublicSandbox} from './client.js'
import {createPullingImage, pinImage, type ProgressOutput} from './image.js'

export interface CreateFromRepoOptions {
  /** Where to look for the repository and its policy. */
  dir: string
  /** `--backend`; undefined: default_backend of the runtime config. */
  backend?: BackendName
  /** `--dangerously-allow-all`: every destination the deny rules and address checks let through. */
  allowAll?: boolean
  /** Allow rules added to the repository's policy (an agent's network needs). */
  extraAllow?: readonly AllowRuleInput[]
  /** The shared agent cache's entry to mount read-only at /cleanroom/agent. */
  agentPackage?: string
  /** For one command: the daemon removes it when that command's stream ends or drops (docs/api.md). */
  ephemeral?: boolean
  /** `--image`: what the sandbox runs on instead of the policy's image (a tag is resolved to its digest). */
  image?: string
  /** Receives the one-line notices: no policy file, allow-all in force, the digest of an --image tag. */
  notice: (message: string) => void
  /** Where the progress of pulling the sandbox's image goes; default stderr. */
  progress?: ProgressOutput
}

export const ALLOW_ALL_WARNING =
  'warning: --dangerously-allow-all: this sandbox may connect to any host on the internet (deny rules, the host\'s own addresses and cloud metadata stay blocked; every connection is still logged)'

/**
 * A new sandbox for the repository around `dir`. The daemon finds and compiles
 * its policy (the same loader as `cleanroom policy validate`, already warm there)
 * and mounts the repository's root (the git root, else `dir`) at /workspace.
 */
export async function createSandboxForRepo(client: DaemonClient, options: CreateFromRepoOptions): Promise<PublicSandbox> {
  const dir = resolve(options.dir)
  if (options.allowAll) options.notice(ALLOW_ALL_WARNING)
  const image = options.image === undefined ? undefined : await pinImage(options.image, options.notice)
  const body = {
    backend: options.backend ?? (await defaultBackend()),
    repository: dir,
    ...(options.extraAllow && options.extraAllow.length > 0 ? {extra_allow: options.extraAllow} : {}),
    ...(options.agentPackage === undefined ? {} : {agent_package: options.agentPackage}),
    ...(image === undefined ? {} : {image}),
    allow_all: options.allowAll === true,
    ...(options.ephemeral ? {ephemeral: true} : {}),
  }
  const sandbox = await createPullingImage(client, () => client.createSandbox(body), options.progress ?? process.stderr)
  if (sandbox.policy_source === null) options.notice(noPolicyNotice(dir))
  if (sandbox.policy.credentials !== undefined) await grantRequested(client, sandbox, options.notice)
  return sandbox
}

/** The runtime config's default_backend. */
export async function defaultBackend(): Promise<BackendName> {
  return (await loadRuntimeConfig()).config.default_backend
}

/** The credential routes the repository's policy asks for, given when the runtime config grants them. */
async function grantRequested(client: DaemonClient, sandbox: PublicSandbox, notice: (message: string) => void): Promise<void> {
  const {config} = await loadRuntimeConfig()
  const {grant, refused} = planRequestedCredentials(sandbox.policy.credentials ?? [], {settings: config.credentials, env: process.env, hostHome: homedir()})
  for (const name of refused) notice(`cleanroom.yaml asks for credential route ${name}: not given (add it to credentials.grant in config.yaml, and define it under credentials.routes)`)
  if (grant) for (const line of renderGrant('the sandbox', await client.grantCredentials(sandbox.sandbox_id, grant))) notice(line)
}

/** The flags that only make sense for a new sandbox are refused with an existing one. */
export function refuseNewSandboxFlags(flags: {sandboxId?: string; allowAll?: boolean; dir?: string; keep?: boolean; update?: boolean; image?: string}): void {
  if (flags.sandboxId === undefined) return
  if (flags.image !== undefined) throw new CleanroomError('usage', '--image cannot be used with --sandbox-id (an existing sandbox keeps the root filesystem it was created with)')
  if (flags.update) throw new CleanroomError('usage', '--update cannot be used with --sandbox-id (a sandbox keeps the agent release it was created with)')
  if (flags.keep) throw new CleanroomError('usage', '--keep cannot be used with --sandbox-id (an existing sandbox is never removed)')
  if (flags.allowAll) throw new CleanroomError('usage', '--dangerously-allow-all cannot be used with --sandbox-id (it only applies to a new sandbox)')
  if (flags.dir !== undefined) throw new CleanroomError('usage', '--chdir cannot be used with --sandbox-id (the sandbox already has its workspace)')
}
