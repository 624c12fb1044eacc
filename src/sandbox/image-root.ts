import {constants} from 'node:fs'
import {lstat, open} from 'node:fs/promises'
import {isAbsolute, join, posix} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {isEnvName} from '../util/env-name.js'
import type {ProvisionImage} from './backend.js'
import {SANDBOX_USER, WORKSPACE} from './layout.js'
import {type ImageUser, parseGroup, parsePasswd, resolveImageUser, sandboxAccounts} from './image-user.js'

/** What a sandbox on an image runs with, read from the image's root filesystem and config (docs/images.md#running-sandboxes-on-an-image). */
export interface ImageSandboxPlan {
  /** The image's unpacked root filesystem in the cache: the read-only lower of the sandbox's root. */
  rootfs: string
  user: ImageUser
  /** The image's `Env`, without HOME (the sandbox's home is always SANDBOX_USER.home). */
  env: Record<string, string>
  /** The image's `WorkingDir`: where commands run in a sandbox that has no workspace. */
  workingDir?: string
  /** The sandbox's /etc/passwd and /etc/group. */
  accounts: {passwd: string; group: string}
}

/** Where every sandbox mounts something of its own: in the image, each of these paths and the directories above it must be a directory or absent. */
const MOUNT_TARGETS = ['/etc', '/proc', '/dev', '/tmp', WORKSPACE, SANDBOX_USER.home]
/** Account files larger than this are not an image's /etc/passwd. */
const MAX_ACCOUNTS_BYTES = 1 << 20

/**
 * Reads what a sandbox needs of `image`: checks that cleanroom's mount points are
 * not symlinks or files in it (a mount there would land elsewhere), reads its
 * passwd and group without following a symlink, and resolves its `User`. The
 * cache is written by the daemon alone and never changes under an image, so
 * what is checked here is what the sandbox gets. `backendTargets`: where the
 * backend mounts parts of its own (gvisor: its helper and egress sockets).
 */
export async function planImageSandbox(image: ProvisionImage, backendTargets: readonly string[] = []): Promise<ImageSandboxPlan> {
  for (const target of [...MOUNT_TARGETS, ...backendTargets]) await requireDirectoryOrAbsent(image, target)
  const [passwd, group] = await Promise.all([readAccounts(image, 'etc/passwd'), readAccounts(image, 'etc/group')])
  const user = resolveImageUser(image.config.User, parsePasswd(passwd ?? ''), parseGroup(group ?? ''))
  const workingDir = image.config.WorkingDir
  return {
    rootfs: image.rootfs,
    user,
    env: imageEnv(image.config.Env),
    ...(workingDir !== undefined && isAbsolute(workingDir) ? {workingDir: posix.normalize(workingDir)} : {}),
    accounts: sandboxAccounts(passwd, group, user),
  }
}

/** `NAME=value` entries as variables; entries that name no variable, and HOME, are left out. */
export function imageEnv(entries: readonly string[] = []): Record<string, string> {
  const env: Record<string, string> = {}
  for (const entry of entries) {
    const equals = entry.indexOf('=')
    const name = entry.slice(0, equals)
    if (equals <= 0 || !isEnvName(name) || name === 'HOME' || entry.includes('\0')) continue
    env[name] = entry.slice(equals + 1)
  }
  return env
}

async function requireDirectoryOrAbsent(image: ProvisionImage, target: string): Promise<void> {
  let path = ''
  for (const part of target.split('/').filter(Boolean)) {
    path = `${path}/${part}`
    const stats = await lstat(join(image.rootfs, path)).catch((error: NodeJS.ErrnoException) => {
      if (error.code === 'ENOENT') return undefined
      throw error
    })
    if (stats === undefined) return
    if (!stats.isDirectory()) {
      const what = stats.isSymbolicLink() ? 'a symlink' : 'not a directory'
      throw new CleanroomError('image_unsupported', `image ${image.ref} cannot run as a sandbox: its ${path} is ${what}, and cleanroom mounts the sandbox's own ${target} there`, {
        suggestions: [`Make ${path} a directory (or leave it out) in the image`],
      })
    }
  }
}

/** A file under the image's /etc (checked a real directory), read without following a symlink; undefined when it is not a regular file. */
async function readAccounts(image: ProvisionImage, relative: string): Promise<string | undefined> {
  let handle
  try {
    handle = await open(join(image.rootfs, relative), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch (error) {
    if (['ENOENT', 'ELOOP', 'ENOTDIR'].includes((error as NodeJS.ErrnoException).code ?? '')) return undefined
    throw error
  }
  try {
    const stats = await handle.stat()
    if (!stats.isFile()) return undefined
    if (stats.size > MAX_ACCOUNTS_BYTES) throw new CleanroomError('image_invalid', `image ${image.ref}: its /${relative} is larger than ${MAX_ACCOUNTS_BYTES} bytes`)
    return (await handle.readFile()).toString('utf8')
  } finally {
    await handle.close()
  }
}
