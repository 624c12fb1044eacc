import {loadRuntimeConfig} from '../config/load.js'
import {isCleanroomError} from '../errors/index.js'
import {parseImageReference, repositoryName} from '../images/reference.js'
import type {DaemonClient, PublicSandbox} from './client.js'

/** Where pull progress goes: stderr, drawn as bars on a terminal. */
export interface ProgressOutput {
  write(text: string): unknown
  isTTY?: boolean
}

/**
 * `--image` as the daemon takes it: `registry/repository@sha256:…`. A reference with
 * a digest is used as it is; a tag is resolved to its digest here (the registry is
 * asked, with the runtime config's credentials), and `notice` shows what it resolved to.
 */
export async function pinImage(raw: string, notice: (message: string) => void): Promise<string> {
  const reference = parseImageReference(raw)
  if (reference.digest) return `${repositoryName(reference)}@${reference.digest}`
  const [{resolveImage}, {config}] = await Promise.all([import('../images/resolve.js'), loadRuntimeConfig()])
  const {ref} = await resolveImage(raw, config.registries)
  notice(`image ${raw} is ${ref}`)
  return ref
}

/**
 * Creates a sandbox; when the daemon answers that its image is not in the cache
 * (image_not_pulled), pulls it through the daemon with this user's registry
 * settings, progress on `progress`, as `image pull` does, and asks once more.
 */
export async function createPullingImage(client: DaemonClient, create: () => Promise<PublicSandbox>, progress: ProgressOutput): Promise<PublicSandbox> {
  try {
    return await create()
  } catch (error) {
    const ref = missingImage(error)
    if (ref === undefined) throw error
    const [{pullThroughDaemon}, {registryAccess}, {PullProgress}, {config}] = await Promise.all([
      import('../images/client.js'),
      import('../images/access.js'),
      import('../images/render.js'),
      loadRuntimeConfig(),
    ])
    const bars = new PullProgress(progress, progress.isTTY === true)
    progress.write(`pulling image ${ref}\n`)
    await pullThroughDaemon(client, ref, registryAccess(config.registries, parseImageReference(ref).registry), (event) => bars.update(event))
    return create()
  }
}

function missingImage(error: unknown): string | undefined {
  if (!isCleanroomError(error) || error.code !== 'image_not_pulled') return undefined
  const ref = (error.details as {ref?: unknown} | undefined)?.ref
  return typeof ref === 'string' ? ref : undefined
}


/**
 * After `cleanroom agent` ended with 127 (its command not found, nothing to install it
 * with): when the sandbox runs on an image, the line that says so and what to do.
 */
export async function agentMissingFromImage(client: DaemonClient, sandboxId: string, agent: string): Promise<string | undefined> {
  const sandbox = await client.inspectSandbox(sandboxId).catch(() => undefined)
  if (sandbox?.image_ref === undefined) return undefined
  return `image ${sandbox.image_ref} has no ${agent} and nothing to install it with: an agent needs sh and either itself or node and npm in the image (docs/images.md#an-image-for-agents)`
}
