import type {ChildProcess} from 'node:child_process'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../../errors/index.js'
import type {ProvisionRequest} from '../../backend.js'
import {listIgnored} from '../../ignored.js'
import {STATE_MOUNT_POINT, type Toolchain} from './availability.js'
import {cgroupDirs} from './cgroups.js'
import {acquireHostResources, type LimitPlan, releaseHostResources} from './host-resources.js'
import {killLaunch, launchInit} from './launch.js'
import {planImage} from './image.js'
import {createArgv} from './nsinit.js'
import {imageRootfs, sandboxRootfs, STATE_LAYOUT, writeGeneratedEtc} from '../../layout.js'
import type {LinuxNsRuntime} from './runtime.js'
import {makeRemovable} from './terminate.js'
import {recordWorkspaceBase} from '../../../workspace/base.js'
import {emptyWorkspace, requireDirectory, settleAll, writeRedactedGitConfig, writeWhiteouts} from '../../workspace-view.js'

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
export async function provisionSandbox(
  tools: Toolchain,
  request: ProvisionRequest,
  limits: LimitPlan | undefined,
  claimUid?: (sandboxId: string, stateDir: string) => Promise<number>,
): Promise<ProvisionedSandbox> {
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
  const held = acquireHostResources(request.sandboxId, state, root, limits, claimUid)
  let noting: Promise<void> = Promise.resolve()
  let launched: ChildProcess | undefined
  try {
    // Independent steps at once: git lists what to hide while the uid, cgroup, /etc, the
    // .git/config the sandbox sees and the root filesystem plan are made.
    const [{hostUid, cgroup}, , hidden, gitConfig, rootfs] = await settleAll([
      held,
      writeGeneratedEtc(state, image?.accounts),
      workspace === null ? Promise.resolve([]) : listIgnored(workspace).then((listing) => listing.paths),
      workspace === null ? Promise.resolve(undefined) : writeRedactedGitConfig(state, workspace),
      image ? Promise.resolve(imageRootfs(STATE_MOUNT_POINT)) : sandboxRootfs(STATE_MOUNT_POINT),
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
      ...(request.readOnlyMounts ? {readOnlyMounts: request.readOnlyMounts} : {}),
      ...(cgroup ? {cgroupDirs: cgroupDirs(cgroup)} : {}),
      ...(image ? {image: {rootfs: image.rootfs, uid: image.workload.uid, gid: image.workload.gid}} : {}),
    })
    // What the workspace starts from, for workspace diff/apply to decide conflicts by content:
    // noted while the init starts (nothing in the sandbox can change the workspace).
    const init = await launchInit(tools.nsinit, argv, join(state, STATE_LAYOUT.log), state, () => {
      if (workspace !== null) noting = recordWorkspaceBase(workspace, state)
    })
    launched = init.child
    await noting
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
    // Nothing may still be writing into the state dir when the caller removes it.
    await noting.catch(() => undefined)
    // launchInit kills what it started when it fails; a base that could not be written (a full disk) fails the create after it.
    if (launched) await killLaunch(launched)
    // What was claimed for the sandbox goes back.
    await held.then((taken) => releaseHostResources(taken, state), () => undefined)
    // The caller removes the state dir; without root that needs the kernel's mode-000 work dir opened first.
    if (!root) await makeRemovable(state)
    throw error
  }
}
