import {stat} from 'node:fs/promises'
import {basename, dirname, posix, resolve} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {SANDBOX_ID_PATTERN} from '../sandbox/ids.js'
import {packPath} from '../util/tar-fs.js'
import {extractUnder} from '../util/tar-extract.js'
import type {DaemonClient} from './client.js'

export interface SandboxPath {
  sandboxId: string
  path: string
}

/** `cr_…:/abs/path` → the sandbox and the path; anything else is a host path. */
export function parseCopyOperand(operand: string): SandboxPath | undefined {
  const colon = operand.indexOf(':')
  if (colon < 0 || !SANDBOX_ID_PATTERN.test(operand.slice(0, colon))) return undefined
  const path = operand.slice(colon + 1)
  if (!posix.isAbsolute(path)) throw new CleanroomError('usage', `${operand}: the path in the sandbox must be absolute (e.g. ${operand.slice(0, colon)}:/workspace/out)`)
  return {sandboxId: operand.slice(0, colon), path}
}

/**
 * `cleanroom cp`: one side in a sandbox, the other on the host, files or
 * directories with their modes. A destination ending in `/` or naming an
 * existing directory receives the source under its own name; otherwise the
 * copy takes the destination's name.
 */
export async function copy(client: DaemonClient, source: string, destination: string): Promise<{files?: number}> {
  const from = parseCopyOperand(source)
  const to = parseCopyOperand(destination)
  if ((from === undefined) === (to === undefined)) {
    throw new CleanroomError('usage', 'exactly one of the two paths must be in a sandbox (cr_<id>:/path)', {
      suggestions: ['cleanroom cp ./notes.txt cr_01JD…:/workspace/notes.txt', 'cleanroom cp cr_01JD…:/workspace/dist ./dist'],
    })
  }

  if (to) {
    const hostPath = resolve(source)
    await stat(hostPath).catch(() => {
      throw new CleanroomError('usage', `${hostPath}: no such file or directory`)
    })
    const into = to.path.endsWith('/') || (await sandboxIsDirectory(client, to))
    const name = into ? basename(hostPath) : posix.basename(to.path)
    const parent = into ? to.path : posix.dirname(to.path)
    await client.putArchive(to.sandboxId, parent, packPath(hostPath, name))
    return {}
  }

  const sandboxPath = from!
  const hostDestination = resolve(destination)
  const existing = await stat(hostDestination).catch(() => undefined)
  const into = destination.endsWith('/') || existing?.isDirectory() === true
  const name = into ? posix.basename(sandboxPath.path) : basename(hostDestination)
  const parent = into ? hostDestination : dirname(hostDestination)
  const archive = await client.getArchive(sandboxPath.sandboxId, sandboxPath.path)
  return {files: await extractUnder(parent, archive, {from: posix.basename(sandboxPath.path), to: name})}
}

async function sandboxIsDirectory(client: DaemonClient, target: SandboxPath): Promise<boolean> {
  const result = await client.run(target.sandboxId, {argv: ['test', '-d', target.path], env: {}})
  return result.exit_code === 0
}
