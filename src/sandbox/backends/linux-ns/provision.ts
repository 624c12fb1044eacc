import type {ChildProcess} from 'node:child_process'
import {mkdir, stat, writeFile} from 'node:fs/promises'
import {isAbsolute, join} from 'node:path'

import {CleanroomError} from '../../../errors/index.js'
import type {ProvisionRequest} from '../../backend.js'
import {redactedGitConfigOf} from '../../git-config.js'
import {listIgnored} from '../../ignored.js'
import {STATE_MOUNT_POINT, type Toolchain} from './availability.js'
import {cgroupDirs} from './cgroups.js'
import {acquireHostResources, type LimitPlan, releaseHostResources} from './host-resources.js'
import {launchInit} from './launch.js'
import {planImage} from './image.js'
import {createArgv} from './nsinit.js'
import {imageRootfs, sandboxRootfs, STATE_LAYOUT, writeGeneratedEtc} from './rootfs.js'
import type {LinuxNsRuntime} from './runtime.js'
import {makeRemovable} from './terminate.js'
import {recordWorkspaceBase} from '../../../workspace/base.js'

export interface ProvisionedSandbox {
  runtime: LinuxNsRuntime
  /** The outer bwrap, our child until it exits. */
  child: ChildProcess
}

/**
 * Builds a sandbox in `request.stateDir`: a host uid of its own and a cgroup with its
 * limits (root daemon), the generated /etc files, the whiteouts for what git ignores,
 * then the init through nsinit and bwrap. On an image, its root filesystem is read first.
 */
export async function provisionSandbox(tools: Toolchain, request: ProvisionRequest, limits: LimitPlan | undefined): Promise<ProvisionedSandbox> {
  const workspace = request.workspaceSource
  if (workspace !== null) await requireDirectory(workspace)
  // Never the host's root filesystem for a policy that names an image.
  if (request.policy.image_ref !== undefined && request.image === undefined) {
    throw new CleanroomError('image_not_pulled', `the policy runs on image ${request.policy.image_ref}, and no image was given to the backend`)
  }
  const image = request.image === undefined ? undefined : await planImage(tools.nsinit, request.image, workspace !== null)

  const state = request.stateDir
  const root = process.getuid?.() === 0
  await mkdir(state, {recursive: true, mode: 0o700})
  const held = acquireHostResources(request.sandboxId, state, root, limits)
  try {
    // Independent steps at once: git lists what to hide while the uid, cgroup, /etc, the
    // .git/config the sandbox sees and the root filesystem plan are made.
    const [{hostUid, cgroup}, , hidden, gitConfig, rootfs] = await settleAll([
      held,
      writeGeneratedEtc(state, image?.accounts),
      workspace === null ? Promise.resolve([]) : listIgnored(workspace).then((listing) => listing.paths),
      workspace === null ? Promise.resolve(undefined) : writeRedactedGitConfig(state, workspace),
      image ? Promise.resolve(imageRootfs(STATE_MOUNT_POINT)) : sandboxRootfs(STATE_MOUNT_POINT),
      // What the workspace starts from, for workspace diff/apply to decide conflicts by content.
      workspace === null ? Promise.resolve() : recordWorkspaceBase(workspace, state),
    ] as const)
    const lower = workspace ?? (await emptyWorkspace(state))
    const argv = createArgv({
      stateDir: state,
      lower,
      hostUid,
      whiteoutFile: await writeWhiteouts(state, hidden),
      gitConfig,
      stateView: STATE_MOUNT_POINT,
      bwrap: tools.bwrap,
      rootfs,
      ...(cgroup ? {cgroupDirs: cgroupDirs(cgroup)} : {}),
      ...(image ? {image: {rootfs: image.rootfs, uid: image.workload.uid, gid: image.workload.gid}} : {}),
    })
    const init = await launchInit(tools.nsinit, argv, join(state, STATE_LAYOUT.log), state)
    return {
      child: init.child,
      runtime: {
        init_pid: init.initPid,
        init_start_time: init.initStartTime,
        mnt_ns: init.mntNs,
        bwrap_pid: init.bwrapPid,
        bwrap_start_time: init.bwrapStartTime,
        ...(hostUid === undefined ? {} : {host_uid: hostUid}),
        state_dir: state,
        userns_mode: !root,
        ...(cgroup ? {cgroup, resources: {cgroup: cgroup.version === 2 ? 'v2' : 'v1', ...limits!.limits}} : {resources: null}),
        ...(image ? {image: image.workload} : {}),
      },
    }
  } catch (error) {
    // launchInit has killed what it started; what was claimed for the sandbox goes back.
    await held.then((taken) => releaseHostResources(taken, state), () => undefined)
    // The caller removes the state dir; without root that needs the kernel's mode-000 work dir opened first.
    if (!root) await makeRemovable(state)
    throw error
  }
}

async function requireDirectory(path: string): Promise<void> {
  const stats = isAbsolute(path) ? await stat(path).catch(() => undefined) : undefined
  if (!stats?.isDirectory()) throw new CleanroomError('bad_request', `${path}: the workspace must be an existing directory given by its absolute path`)
}

async function emptyWorkspace(state: string): Promise<string> {
  const dir = join(state, STATE_LAYOUT.emptyWorkspace)
  await mkdir(dir, {mode: 0o755})
  return dir
}

/** Writes the paths to hide, NUL-separated, for nsinit's --whiteout-file; none: no file. */
async function writeWhiteouts(state: string, paths: string[]): Promise<string | undefined> {
  if (paths.length === 0) return undefined
  const file = join(state, STATE_LAYOUT.whiteouts)
  await writeFile(file, paths.map((path) => `${path}\0`).join(''), {mode: 0o600})
  return file
}

/** The redacted .git/config for nsinit --git-config, when the workspace's own holds something to redact. */
async function writeRedactedGitConfig(state: string, workspace: string): Promise<string | undefined> {
  const redacted = await redactedGitConfigOf(workspace)
  if (redacted === undefined) return undefined
  const file = join(state, STATE_LAYOUT.gitConfig)
  await writeFile(file, redacted, {mode: 0o600})
  return file
}

/**
 * Promise.all that waits for every step before rejecting: the caller removes the
 * state dir on failure, and no step may still be writing into it then.
 */
async function settleAll<T extends readonly unknown[]>(steps: {[K in keyof T]: Promise<T[K]>}): Promise<T> {
  const results = await Promise.allSettled(steps)
  const failed = results.find((result) => result.status === 'rejected')
  if (failed) throw failed.reason
  return results.map((result) => (result as PromiseFulfilledResult<unknown>).value) as unknown as T
}
