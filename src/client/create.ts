import {resolve} from 'node:path'

import type {BackendName} from '../config/schema.js'
import {loadPolicy, noPolicyNotice} from '../policy/load.js'
import {findGitRoot} from '../util/repo.js'
import type {DaemonClient, PublicSandbox} from './client.js'

export interface CreateFromRepoOptions {
  /** Where to look for the repository and its policy. */
  dir: string
  backend: BackendName
  /** `--dangerously-allow-all`: every destination the deny rules and address checks let through. */
  allowAll?: boolean
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
  return client.createSandbox({backend: options.backend, policy, workspace_source: workspace, allow_all: options.allowAll === true})
}
