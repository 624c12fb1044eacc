import {access, constants} from 'node:fs/promises'
import {join} from 'node:path'

import {npmConfigOf} from '../agents/cache/layout.js'
import {commandProgram} from '../agents/script.js'
import type {AgentSpec} from '../agents/spec.js'
import type {BackendName} from '../config/schema.js'
import type {DaemonClient} from './client.js'

/** A slow answer means the registry is being asked or a release fetched: say so then, not on every start. */
const PROGRESS_AFTER_MS = 400

/** The PATH of a sandbox's processes, over the host's root filesystem (src/sandbox/backends/linux-ns/rootfs.ts). */
const SANDBOX_PATH_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']

/**
 * The shared agent cache's entry for a new sandbox of `agent`, or undefined when
 * the agent needs none: it has no npm package, or its program is already on the
 * root filesystem the sandbox gets (the host's), where the agent script finds it
 * first. The daemon answers at once when the cache is fresh; otherwise it asks the
 * registry (once a day per package for the whole machine, or now with `update`)
 * and fetches a new release in a sandbox of its own, which takes a while the first
 * time: a line says so. A failed fetch is an error naming npm's reason; a failed
 * check with a release cached before is a warning, and that release runs.
 */
export async function agentPackageFor(
  client: DaemonClient,
  agent: AgentSpec,
  options: {update: boolean; backend: BackendName; say: (line: string) => void},
): Promise<string | undefined> {
  if (agent.package === undefined) return undefined
  const program = commandProgram(agent.command)
  if (program !== undefined && (await onHostPath(program))) return undefined

  const wanted = agent.version ?? 'latest'
  const progress = setTimeout(
    () => options.say(`${options.update ? 'checking' : 'getting'} ${agent.package}@${wanted} for the agent cache this machine's sandboxes share (once a day per package)…`),
    PROGRESS_AFTER_MS,
  )
  try {
    const answer = await client.resolveAgentPackage({
      package: agent.package,
      wanted,
      network: agent.network,
      npm_config: npmConfigOf(agent.env),
      update: options.update,
      backend: options.backend,
    })
    if (answer.warning) options.say(`warning: ${answer.warning}`)
    if (answer.action === 'fetched') options.say(`${answer.package} ${answer.version} is in the agent cache now`)
    else if (options.update) options.say(`${answer.package}@${wanted} is ${answer.version}${answer.action === 'checked' ? ', the release cached before' : ''}`)
    return answer.entry
  } finally {
    clearTimeout(progress)
  }
}

/** Whether the name `program` is on a sandbox's PATH over the host's root filesystem (a path is left to the script). */
async function onHostPath(program: string): Promise<boolean> {
  if (program.includes('/')) return false
  for (const path of SANDBOX_PATH_DIRS.map((dir) => join(dir, program))) {
    if (await access(path, constants.X_OK).then(() => true, () => false)) return true
  }
  return false
}
