import {execFile} from 'node:child_process'
import {constants} from 'node:fs'
import {realpath, stat} from 'node:fs/promises'
import {isAbsolute} from 'node:path'
import {promisify} from 'node:util'

import type {LinuxNsSettings} from '../../../config/schema.js'
import {findExecutable, readSysctl} from '../../../util/executable.js'
import {findNsinit, type NsinitBinary} from './nsinit-binary.js'

/** The programs a linux-ns sandbox is built with, found on this machine. */
export interface Toolchain {
  bwrap: string
  nsinit: string
  /** Where that nsinit came from, e.g. `prebuilt for linux-x64`. */
  nsinitOrigin: NsinitBinary['description']
  /** e.g. `bubblewrap 0.8.0` */
  bwrapVersion: string
}

export type Probe = ({ok: true} & Toolchain) | {ok: false; problem: string; fix: string}

/** Where nsinit shows the state dir to bwrap (see --bind-state in nsinit.c). */
export const STATE_MOUNT_POINT = '/mnt'

/** Whether this machine can build linux-ns sandboxes, and with what. */
export async function probeMachine(settings: Pick<LinuxNsSettings, 'bwrap_path'>): Promise<Probe> {
  const found = await findExecutable(settings.bwrap_path)
  if (!found) {
    return {
      ok: false,
      problem: `bubblewrap (${settings.bwrap_path}) was not found${isAbsolute(settings.bwrap_path) ? '' : ' on PATH'}`,
      fix: 'apt-get install -y bubblewrap (or set backends.linux-ns.bwrap_path in config.yaml)',
    }
  }
  // nsinit runs bwrap after it has become the sandbox's uid: the path it gets must be one that uid can follow.
  const bwrap = await realpath(found)
  const blocked = process.getuid?.() === 0 ? await closedToOthers(bwrap) : undefined
  if (blocked) {
    const via = found === bwrap ? '' : ` (${found} leads there)`
    return {
      ok: false,
      problem: `${bwrap}${via} cannot be run by the sandboxes' own uids: ${blocked} is not ${blocked === bwrap ? 'executable' : 'searchable'} by other users`,
      fix: `chmod o+x ${blocked}, or point backends.linux-ns.bwrap_path in config.yaml at a bwrap every user can run (apt-get install -y bubblewrap puts one in /usr/bin)`,
    }
  }
  const bwrapVersion = await versionOf(bwrap)
  if (!bwrapVersion) {
    return {ok: false, problem: `${bwrap} --version failed: it is not a working bubblewrap`, fix: 'apt-get install -y --reinstall bubblewrap'}
  }

  const nsinit = await findNsinit()
  if (!nsinit.ok) return nsinit

  const userns = await userNamespaceProblem()
  if (userns) return {ok: false, ...userns}

  const mountPoint = await stat(STATE_MOUNT_POINT).catch(() => undefined)
  if (!mountPoint?.isDirectory()) {
    return {ok: false, problem: `${STATE_MOUNT_POINT} is not a directory: the sandbox launch helper mounts the sandbox's state there (in a private mount namespace)`, fix: `mkdir ${STATE_MOUNT_POINT}`}
  }

  return {ok: true, bwrap, nsinit: nsinit.binary.path, nsinitOrigin: nsinit.binary.description, bwrapVersion}
}

/** bwrap runs as an unprivileged uid in both daemon modes, so it needs unprivileged user namespaces. */
async function userNamespaceProblem(): Promise<{problem: string; fix: string} | undefined> {
  const max = await readSysctl('user/max_user_namespaces')
  if (max !== undefined && max <= 0) {
    return {problem: 'user namespaces are disabled (user.max_user_namespaces = 0)', fix: 'sysctl -w user.max_user_namespaces=65536 (and set it in /etc/sysctl.d/ to keep it)'}
  }
  if ((await readSysctl('kernel/unprivileged_userns_clone')) === 0) {
    return {problem: 'unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone = 0)', fix: 'sysctl -w kernel.unprivileged_userns_clone=1 (and set it in /etc/sysctl.d/ to keep it)'}
  }
  if ((await readSysctl('kernel/apparmor_restrict_unprivileged_userns')) === 1) {
    return {
      problem: 'AppArmor restricts unprivileged user namespaces (kernel.apparmor_restrict_unprivileged_userns = 1), so bwrap and cleanroom-nsinit cannot create them',
      fix: 'give bwrap and cleanroom-nsinit an AppArmor profile allowing "userns," (see docs/backends.md), or: sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
    }
  }
  return undefined
}

/** The first of `path`'s directories that others cannot search, or `path` itself if others cannot execute it. */
async function closedToOthers(path: string): Promise<string | undefined> {
  const parts = path.split('/').filter(Boolean)
  for (let depth = 0; depth <= parts.length; depth++) {
    const prefix = `/${parts.slice(0, depth).join('/')}`
    const mode = (await stat(prefix)).mode
    if ((mode & constants.S_IXOTH) === 0) return prefix
  }
  return undefined
}

async function versionOf(bwrap: string): Promise<string | undefined> {
  try {
    const {stdout} = await promisify(execFile)(bwrap, ['--version'], {timeout: 5000})
    return stdout.trim() || undefined
  } catch {
    return undefined
  }
}
