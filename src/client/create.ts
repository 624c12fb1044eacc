import {resolve} from 'node:path'

import type {BackendName} from '../config/schema.js'
import {loadPolicy, noPolicyNotice} from '../policy/load.js'
import {findGitRoot} from '../util/repo.js'
import type {DaemonClient, PublicSandbox} from './client.js'

export interface CreateFromRepoOptions {
  /** Where to look for the repository and its policy. */
  dir: string
  backend: BackendName
  /** Receives the one-line notice when the repository has no policy file. */
  notice: (message: string) => void
}

/**
 * A new sandbox for the repository around `dir`: its policy (or the default),
 * and the repository's root (the git root, else `dir`) at /workspace.
 */
export async function createSandboxForRepo(client: DaemonClient, options: CreateFromRepoOptions): Promise<PublicSandbox> {
  const dir = resolve(options.dir)
  const {source, policy} = await loadPolicy(dir)
  if (source === null) options.notice(noPolicyNotice(dir))
  const workspace = (await findGitRoot(dir)) ?? dir
  return client.createSandbox({backend: options.backend, policy, workspace_source: workspace})
}
