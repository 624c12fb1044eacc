import {stat} from 'node:fs/promises'
import {isAbsolute} from 'node:path'

import type {GvisorSettings} from '../../../config/schema.js'
import {findExecutable, readSysctl} from '../../../util/executable.js'
import {STATE_MOUNT_POINT} from '../linux-ns/availability.js'
import {findNsinit, type NsinitBinary} from '../linux-ns/nsinit-binary.js'
import type {GvisorPlatform} from './descriptor.js'
import {runscCommand} from './runsc.js'

/**
 * The first runsc release that can stat the root of a bind mount: Debian 12's own
 * build (0.0~20221219) fails `ls /workspace` with EINVAL; bookworm-backports has 20240729.
 */
export const OLDEST_RUNSC_RELEASE = 20240729

export const RUNSC_INSTALL =
  "echo 'deb http://deb.debian.org/debian bookworm-backports main' > /etc/apt/sources.list.d/bookworm-backports.list && apt-get update && apt-get install -y -t bookworm-backports runsc"

/** The programs a gvisor sandbox is built with, found on this machine. */
export interface Toolchain {
  runsc: string
  /** e.g. `runsc 0.0~20240729.0` */
  runscVersion: string
  platform: GvisorPlatform
  /** The launch helper, also bound into each sandbox for its init, exec and forwarder modes. */
  nsinit: string
  nsinitOrigin: NsinitBinary['description']
}

export type Probe = ({ok: true} & Toolchain) | {ok: false; problem: string; fix: string}

/** Whether this machine can run gvisor sandboxes, and with what. */
export async function probeMachine(settings: Pick<GvisorSettings, 'runsc_path' | 'platform'>): Promise<Probe> {
  if (process.getuid?.() !== 0) {
    return {
      ok: false,
      problem: 'the gvisor backend needs a root daemon: runsc starts each sandbox as root, and the sandbox then runs as a host uid of its own',
      fix: 'run cleanroom as root, or use the linux-ns backend (--backend linux-ns)',
    }
  }
  const runsc = await findExecutable(settings.runsc_path)
  if (!runsc) {
    return {
      ok: false,
      problem: `runsc (${settings.runsc_path}) was not found${isAbsolute(settings.runsc_path) ? '' : ' on PATH'}`,
      fix: `${RUNSC_INSTALL} (or set backends.gvisor.runsc_path in config.yaml)`,
    }
  }
  const version = await runscCommand(runsc, ['--version'])
  const line = version.stdout.split('\n')[0]?.trim() ?? ''
  if (!version.ok || !line.startsWith('runsc version ')) {
    return {ok: false, problem: `${runsc} --version failed: it is not a working runsc`, fix: RUNSC_INSTALL}
  }
  const runscVersion = line.replace(/^runsc version /, 'runsc ')
  const release = Number(/\b(\d{8})\b/.exec(line)?.[1] ?? Number.NaN)
  if (release < OLDEST_RUNSC_RELEASE) {
    return {
      ok: false,
      problem: `${runscVersion} cannot stat the root of a bind mount (ls /workspace fails with EINVAL): it needs a release of ${OLDEST_RUNSC_RELEASE} or later`,
      fix: RUNSC_INSTALL,
    }
  }

  const nsinit = await findNsinit()
  if (!nsinit.ok) return nsinit

  if (((await readSysctl('user/max_user_namespaces')) ?? 1) <= 0) {
    return {
      ok: false,
      problem: 'user namespaces are disabled (user.max_user_namespaces = 0): runsc maps each sandbox to a host uid of its own in one',
      fix: 'sysctl -w user.max_user_namespaces=65536 (and set it in /etc/sysctl.d/ to keep it)',
    }
  }
  const mountPoint = await stat(STATE_MOUNT_POINT).catch(() => undefined)
  if (!mountPoint?.isDirectory()) {
    return {ok: false, problem: `${STATE_MOUNT_POINT} is not a directory: the sandbox launch helper mounts the sandbox's state there (in a private mount namespace)`, fix: `mkdir ${STATE_MOUNT_POINT}`}
  }
  return {ok: true, runsc, runscVersion, platform: settings.platform, nsinit: nsinit.binary.path, nsinitOrigin: nsinit.binary.description}
}
