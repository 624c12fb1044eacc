import {createHash} from 'node:crypto'
import {chmod, copyFile, lstat, mkdir, mkdtemp, readFile, rename, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError, messageOf} from '../../../errors/index.js'

/** The name nsinit has in the dir every sandbox binds read-only at GUEST.bin. */
export const GUEST_NSINIT = 'cleanroom-nsinit'

/**
 * The dir holding a copy of `nsinit` that every sandbox binds read-only at GUEST.bin:
 * `<runRoot>/bin-<sha256 of nsinit>`, made once (by whichever daemon comes first) and
 * never changed after, root's and readable by all, since a sandbox's gofer runs as its
 * own uid and nsinit may sit below a dir only root may traverse. Its name is its content,
 * so daemons of the same cleanroom share it and no daemon replaces one in use; it is not
 * a sandbox id, so the sweep of leftover run dirs leaves it; /run empties at boot.
 */
export async function shareGuestBin(nsinit: string, runRoot: string): Promise<string> {
  try {
    const digest = createHash('sha256').update(await readFile(nsinit)).digest('hex')
    const dir = join(runRoot, `bin-${digest.slice(0, 32)}`)
    if (await isSharedBin(dir)) return dir
    await mkdir(runRoot, {recursive: true, mode: 0o711})
    // Made whole under another name, then renamed: a dir by the final name is always complete.
    const making = await mkdtemp(join(runRoot, '.bin-'))
    try {
      await copyFile(nsinit, join(making, GUEST_NSINIT))
      await chmod(join(making, GUEST_NSINIT), 0o755)
      await chmod(making, 0o755)
      await rename(making, dir).catch(async (error: NodeJS.ErrnoException) => {
        // Another daemon made it first.
        if (!['EEXIST', 'ENOTEMPTY'].includes(error.code ?? '') || !(await isSharedBin(dir))) throw error
      })
    } finally {
      await rm(making, {recursive: true, force: true})
    }
    return dir
  } catch (error) {
    throw new CleanroomError('backend_failed', `could not make the copy of cleanroom-nsinit gVisor sandboxes run (in ${runRoot}): ${messageOf(error)}`, {
      cause: error,
      suggestions: [`Check that root can write ${runRoot}: ls -ld ${runRoot}`],
    })
  }
}

/** A dir and a program in it, both root's and writable by root only. */
async function isSharedBin(dir: string): Promise<boolean> {
  const [folder, program] = await Promise.all([lstat(dir).catch(() => undefined), lstat(join(dir, GUEST_NSINIT)).catch(() => undefined)])
  const rootsOnly = (stats: typeof folder) => stats !== undefined && stats.uid === 0 && (stats.mode & 0o022) === 0
  return folder?.isDirectory() === true && program?.isFile() === true && rootsOnly(folder) && rootsOnly(program)
}
