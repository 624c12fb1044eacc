import {resolve} from 'node:path'

import type {BackendName} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {withAdditionalAllow} from '../policy/compile.js'
import {loadPolicy, noPolicyNotice} from '../policy/load.js'
import type {AllowRuleInput} from '../policy/schema.js'
import {findGitRoot} from '../util/repo.js'
import type {DaemonClient, PublicSandbox} from './client.js'

export interface CreateFromRepoOptions {
  /** Where to look for the repository and its policy. */
  dir: string
  backend: BackendName
  /** `--dangerously-allow-all`: every destination the deny rules and address checks let through. */
  allowAll?: boolean
  /** Allow rules added to the repository's policy (an agent's network needs). */
  extraAllow?: readonly AllowRuleInput[]
  /** Receives the one-line notices: no policy file, allow-all in force. */
  notice: (message: string) => void
}

export const ALLOW_ALL_WARNING =
  'warning: --dangerously-allow-all: this sandbox may connect to any host on the internet (deny rules, the host\'s own addresses and cloud metadata stay blocked; every connection is still logged)'

/**
 * A new sandbox for the repository around `dir`: its policy (or the default),
 * and the repository's root (the git root, else `dir`) at /workspace.
 */
export async function createSandboxForRepo(client: DaemonClient, options: CreateFromRepoOptions): Promise<PublicSandbox> {
  const dir = resolve(options.dir)
  const {source, policy} = await loadPolicy(dir)
  if (source === null) options.notice(noPolicyNotice(dir))
  const workspace = (await findGitRoot(dir)) ?? dir
  if (options.allowAll) options.notice(ALLOW_ALL_WARNING)
  return client.createSandbox({
    backend: options.backend,
    policy: options.extraAllow ? withAdditionalAllow(policy, options.extraAllow) : policy,
    workspace_source: workspace,
    allow_all: options.allowAll === true,
  })
}

/** The flags that only make sense for a new sandbox are refused with an existing one. */
export function refuseNewSandboxFlags(flags: {sandboxId?: string; allowAll?: boolean; dir?: string; keep?: boolean}): void {
  if (flags.sandboxId === undefined) return
  if (flags.keep) throw new CleanroomError('usage', '--keep cannot be used with --sandbox-id (an existing sandbox is never removed)')
  if (flags.allowAll) throw new CleanroomError('usage', '--dangerously-allow-all cannot be used with --sandbox-id (it only applies to a new sandbox)')
  if (flags.dir !== undefined) throw new CleanroomError('usage', '--chdir cannot be used with --sandbox-id (the sandbox already has its workspace)')
}
