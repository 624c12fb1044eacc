import {createHash} from 'node:crypto'
import {chmod, copyFile, lstat, mkdir, mkdtemp, readdir, readFile, realpath, rename, rm} from 'node:fs/promises'
import {join, posix, relative} from 'node:path'

import {CleanroomError, messageOf} from '../../../errors/index.js'
import {type MountEntry, parseMountinfo} from '../../../util/mountinfo.js'
import {processIds} from '../../../util/proc.js'
import {mountNamespace} from '../linux-ns/runtime.js'

/** The name nsinit has in the dir every sandbox binds read-only at GUEST.bin. */
export const GUEST_NSINIT = 'cleanroom-nsinit'

/**
 * The dir holding a copy of `nsinit` that every sandbox binds read-only at GUEST.bin:
 * `<runRoot>/bin-<sha256 of nsinit>`, made once (by whichever daemon comes first) and
 * never changed after, root's and readable by all, since a sandbox's gofer runs as its
 * own uid and nsinit may sit below a dir only root may traverse. Its name is its content,
 * so daemons of the same cleanroom share it and no daemon replaces one in use; it is not
 * a sandbox id, so the sweep of leftover run dirs leaves it. A copy no sandbox binds any
 * more goes in a daemon's sweep (sweepGuestBins); /run empties at boot.
 */
export async function shareGuestBin(nsinit: string, runRoot: string): Promise<string> {
  try {
    const dir = await guestBinPath(nsinit, runRoot)
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

/** Where the shared copy of `nsinit` is (or is to be) made: its name is its content. */
export async function guestBinPath(nsinit: string, runRoot: string): Promise<string> {
  const digest = createHash('sha256').update(await readFile(nsinit)).digest('hex')
  return join(runRoot, `bin-${digest.slice(0, 32)}`)
}

/** A dir and a program in it, both root's and writable by root only. */
async function isSharedBin(dir: string): Promise<boolean> {
  const [folder, program] = await Promise.all([lstat(dir).catch(() => undefined), lstat(join(dir, GUEST_NSINIT)).catch(() => undefined)])
  const rootsOnly = (stats: typeof folder) => stats !== undefined && stats.uid === 0 && (stats.mode & 0o022) === 0
  return folder?.isDirectory() === true && program?.isFile() === true && rootsOnly(folder) && rootsOnly(program)
}

/**
 * The shared copy a daemon's creates bind: made on first use, and made again should it be
 * gone, as after the sweep of a daemon of another cleanroom version while this one had
 * no sandbox.
 */
export class SharedGuestBin {
  private made?: Promise<string>

  constructor(
    private readonly nsinit: () => Promise<string>,
    private readonly runRoot: string,
  ) {}

  async dir(): Promise<string> {
    const made = await this.make()
    if (await isSharedBin(made)) return made
    this.made = undefined
    return this.make()
  }

  /** Once per daemon; tried again after a failure. */
  private make(): Promise<string> {
    this.made ??= this.nsinit()
      .then((nsinit) => shareGuestBin(nsinit, this.runRoot))
      .catch((error: unknown) => {
        this.made = undefined
        throw error
      })
    return this.made
  }
}

/** A shared copy (`bin-` and 32 hex digits of its content's sha256), and one being made (mkdtemp's `.bin-XXXXXX`). */
const SHARED_BIN = /^bin-[0-9a-f]{32}$/
const BEING_MADE = /^\.bin-[A-Za-z0-9]{6}$/

/**
 * Removes the copies of nsinit under `runRoot` that no sandbox binds any more (those of
 * older cleanroom builds), and copies a killed daemon left half-made, except `keep`
 * (this daemon's) and any younger than `minAgeMs` (a daemon may be about to bind one it
 * just made). A copy is bound while a mount in any mount namespace on the machine has it,
 * or a dir in it, as its source: a running gVisor sandbox's gofer does, for as long as
 * the sandbox lives. A copy that cannot be told apart from the mounts is kept.
 */
export async function sweepGuestBins(runRoot: string, keep: string | undefined, minAgeMs: number, now = Date.now()): Promise<string[]> {
  const old: string[] = []
  for (const name of await readdir(runRoot).catch(() => [] as string[])) {
    const dir = join(runRoot, name)
    if (dir === keep || !(SHARED_BIN.test(name) || BEING_MADE.test(name))) continue
    const stats = await lstat(dir).catch(() => undefined)
    if (stats?.isDirectory() && now - stats.mtimeMs >= minAgeMs) old.push(dir)
  }
  if (old.length === 0) return []
  const bound = await boundDirs(old)
  const removed: string[] = []
  for (const dir of old) {
    if (bound.has(dir)) continue
    await rm(dir, {recursive: true, force: true})
    removed.push(dir)
  }
  return removed
}

/**
 * Of `dirs`, those some mount on the machine has as its source, or that cannot be placed
 * on a filesystem: mountinfo names a bind mount's source by its filesystem (`major:minor`)
 * and its path within it, which the daemon's own mounts give for each dir. Each mount
 * namespace is read once.
 */
async function boundDirs(dirs: readonly string[]): Promise<Set<string>> {
  const own = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'))
  const bound = new Set<string>()
  const wanted: Array<{dir: string; device: string; path: string}> = []
  for (const dir of dirs) {
    const place = await realpath(dir).then((real) => placeOn(own, real), () => undefined)
    if (place === undefined) bound.add(dir)
    else wanted.push({dir, ...place})
  }
  const seen = new Set<number>()
  for (const pid of await processIds()) {
    const namespace = await mountNamespace(Number(pid))
    if (namespace === undefined || seen.has(namespace)) continue
    const mountinfo = await readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => undefined)
    if (mountinfo === undefined) continue
    seen.add(namespace)
    for (const mount of parseMountinfo(mountinfo)) {
      for (const {dir, device, path} of wanted) if (mount.device === device && (mount.root === path || mount.root.startsWith(`${path}/`))) bound.add(dir)
    }
  }
  return bound
}

/** Where `path` (no symlink in it) lies: the filesystem of the deepest mount over it and the path within that filesystem. */
function placeOn(mounts: readonly MountEntry[], path: string): {device: string; path: string} | undefined {
  let deepest: MountEntry | undefined
  for (const mount of mounts) {
    const over = mount.mountPoint === '/' || path === mount.mountPoint || path.startsWith(`${mount.mountPoint}/`)
    // A later mount at the same point hides an earlier one.
    if (over && (deepest === undefined || mount.mountPoint.length >= deepest.mountPoint.length)) deepest = mount
  }
  return deepest && {device: deepest.device, path: posix.join(deepest.root, relative(deepest.mountPoint, path))}
}
