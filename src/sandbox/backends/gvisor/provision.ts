import {chmod, chown, mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import type {ProvisionRequest} from '../../backend.js'
import {CleanroomError} from '../../../errors/index.js'
import {listIgnored} from '../../ignored.js'
import {imageRootfs, SANDBOX_USER, sandboxRootfs, STATE_LAYOUT, writeGeneratedEtc} from '../../layout.js'
import {emptyWorkspace, requireDirectory, settleAll, writeRedactedGitConfig, writeWhiteouts} from '../../workspace-view.js'
import {recordWorkspaceBase} from '../../../workspace/base.js'
import {STATE_MOUNT_POINT} from '../linux-ns/availability.js'
import {cgroupDirs, createSandboxCgroup, removeSandboxCgroup, type SandboxCgroup} from '../linux-ns/cgroups.js'
import type {LimitPlan} from '../linux-ns/host-resources.js'
import {planImage} from '../linux-ns/image.js'
import {readOnlyMountPlan} from '../linux-ns/nsinit.js'
import type {HostUidReserve} from '../linux-ns/uid-reserve.js'
import {HOST_UID_RANGE, releaseHostUid} from '../linux-ns/uids.js'
import type {Toolchain} from './availability.js'
import {GUEST, GVISOR_STATE, writeBundle} from './bundle.js'
import {ExecServer} from './exec-server.js'
import {launchSandbox} from './launch.js'
import {hostLimits} from './limits.js'
import {CONTAINER_ID, rootFlags, runscCommand} from './runsc.js'
import type {GvisorRuntime} from './runtime.js'

/** Where each sandbox's run dir is made: short, so the unix sockets in it stay within 107 bytes. */
export const RUN_ROOT = '/run/cleanroom-gvisor'

/**
 * The workload's files belong to the sandbox's uid plus this: past the range sandbox
 * uids are claimed from, so no other sandbox's uid is ever the owner of this one's files.
 * A workload that is root inside (an image's User) is the sandbox's root, and its files the root's.
 */
export const FILES_UID_OFFSET = HOST_UID_RANGE.last - HOST_UID_RANGE.first + 1

/** What a daemon's creates share: its reserved host uid and the copy of nsinit every sandbox binds. */
export interface DaemonShared {
  uids: HostUidReserve
  guestBin: () => Promise<string>
}

/**
 * Builds a sandbox: a host uid U of its own and, with `limits`, a cgroup with them set,
 * the generated /etc files, the whiteouts for what git ignores, the OCI bundle, then
 * nsinit create (joining the cgroup, then making the workspace overlay, and an image's
 * root under the sandbox's upper layer, in a private mount namespace) becoming `runsc
 * run --detach`, which starts the gVisor kernel and gofer as U and the sandbox's init
 * inside, then exits: all of them, and every thread they make, are in the cgroup.
 */
export async function provisionSandbox(tools: Toolchain, shared: DaemonShared, request: ProvisionRequest, limits: LimitPlan | undefined): Promise<{runtime: GvisorRuntime; execServer: ExecServer; ready: Promise<void>}> {
  const workspace = request.workspaceSource
  if (workspace !== null) await requireDirectory(workspace)
  // Never the host's root filesystem for a policy that names an image.
  if (request.policy.image_ref !== undefined && request.image === undefined) {
    throw new CleanroomError('image_not_pulled', `the policy runs on image ${request.policy.image_ref}, and no image was given to the backend`)
  }
  // The init, each exec and the forwarders run the bound nsinit inside the image: it must be the static one.
  const image = request.image === undefined ? undefined : await planImage(tools.nsinit, request.image, workspace !== null, [GUEST.bin, GUEST.egress])
  const workload = image ? {uid: image.workload.uid, gid: image.workload.gid} : {uid: SANDBOX_USER.uid, gid: SANDBOX_USER.gid}

  const state = request.stateDir
  const runDir = join(RUN_ROOT, request.sandboxId)
  await mkdir(state, {recursive: true, mode: 0o700})
  let claimed: number | undefined
  let cgroup: SandboxCgroup | undefined
  let noting: Promise<void> = Promise.resolve()
  let execServer: ExecServer | undefined
  try {
    // Independent steps at once: git lists what to hide while the uid, /etc, the .git/config
    // the sandbox sees, the run dir and the root filesystem plan are made. The workspace's
    // base is noted while runsc starts (nothing in the sandbox can change the workspace).
    const [hostUid, , hidden, gitConfig, rootfs, , guestBin] = await settleAll([
      // The uid claim comes before the cgroup: a sweep of leftover cgroups never takes a claimed sandbox's.
      shared.uids.claim(request.sandboxId, state).then(async (uid) => {
        claimed = uid
        if (limits) cgroup = await createSandboxCgroup(limits.host, request.sandboxId, hostLimits(limits.limits))
        return uid
      }),
      writeGeneratedEtc(state, image?.accounts),
      workspace === null ? Promise.resolve([]) : listIgnored(workspace).then((listing) => listing.paths),
      workspace === null ? Promise.resolve(undefined) : writeRedactedGitConfig(state, workspace),
      image ? Promise.resolve(imageRootfs(STATE_MOUNT_POINT)) : sandboxRootfs(STATE_MOUNT_POINT),
      mkdir(RUN_ROOT, {recursive: true, mode: 0o711}).then(() => Promise.all(['egress', 'exec'].map((name) => mkdir(join(runDir, name), {recursive: true, mode: 0o700})))),
      shared.guestBin(),
    ] as const)
    const filesUid = workload.uid === 0 ? hostUid : hostUid + FILES_UID_OFFSET
    const filesGid = workload.gid === 0 ? hostUid : hostUid + FILES_UID_OFFSET
    const egressDir = join(runDir, 'egress')
    const execDir = join(runDir, 'exec')
    const extra = readOnlyMountPlan(request.readOnlyMounts, STATE_MOUNT_POINT)
    const [, , , , server, , lower, whiteoutFile] = await settleAll([
      // Only the sandbox's root may enter: the forwarders inside reach the daemon's sockets here.
      chown(runDir, 0, hostUid),
      chmod(runDir, 0o710),
      chown(egressDir, hostUid, hostUid),
      // The exec server inside is the workload's user; its connections reach the host as the sandbox's kernel (group hostUid).
      chown(execDir, filesUid, hostUid).then(() => chmod(execDir, 0o750)),
      // Kept as it comes: a later step that fails closes it.
      ExecServer.listen(execDir, {uid: filesUid, gid: hostUid}).then((listening) => (execServer = listening)),
      writeBundle(state, {stateView: STATE_MOUNT_POINT, guestBin, egressDir, rootfs: [...rootfs, ...extra.rootfs], hostUid, filesUid, filesGid, workload, imageRoot: image !== undefined, tasks: limits?.limits.pids, forwardPorts: request.listenPorts, execDir}),
      workspace === null ? emptyWorkspace(state) : Promise.resolve(workspace),
      writeWhiteouts(state, hidden),
    ] as const)
    const argv = [
      'create', '--repo', lower, '--state', state, '--bind-state', STATE_MOUNT_POINT, '--etc', '--keep-root',
      '--uid', String(filesUid), '--gid', String(filesGid),
      ...(image ? ['--rootfs', image.rootfs] : []),
      ...(whiteoutFile === undefined ? [] : ['--whiteout-file', whiteoutFile]),
      ...extra.args,
      ...(gitConfig === undefined ? [] : ['--git-config', gitConfig]),
      ...(cgroup ? cgroupDirs(cgroup).flatMap((dir) => ['--cgroup', dir]) : []),
      '--', tools.runsc, ...runscFlags(runDir, tools.platform), 'run', '--detach', '--bundle', `${STATE_MOUNT_POINT}/${GVISOR_STATE.bundle}`, CONTAINER_ID,
    ]
    const launched = await launchSandbox(tools.nsinit, argv, join(state, STATE_LAYOUT.log), state, runDir, {
      initInput: `${server.key}\n`,
      whileStarting: () => {
        if (workspace !== null) noting = recordWorkspaceBase(workspace, state)
      },
    })
    await noting
    const runtime: GvisorRuntime = {
      state_dir: state,
      run_dir: runDir,
      host_uid: hostUid,
      files_uid: filesUid,
      sandbox_pid: launched.sandbox.pid,
      sandbox_start_time: launched.sandbox.startTime,
      gofer_pid: launched.gofer.pid,
      gofer_start_time: launched.gofer.startTime,
      ...(cgroup ? {cgroup, resources: {cgroup: cgroup.version === 2 ? 'v2' : 'v1', ...limits!.limits}} : {resources: null}),
      ...(image ? {image: image.workload} : {}),
    }
    return {runtime, execServer: server, ready: launched.ready}
  } catch (error) {
    execServer?.close()
    // Nothing may still be writing into the state dir when the caller removes it.
    await noting.catch(() => undefined)
    // A launch cut short may leave runsc's record of the container; the caller removes the state dir.
    await runscCommand(tools.runsc, [...rootFlags({run_dir: runDir}), 'delete', '--force', CONTAINER_ID])
    await rm(runDir, {recursive: true, force: true})
    if (cgroup) await removeSandboxCgroup(cgroup)
    if (claimed !== undefined) await releaseHostUid(claimed, state).catch(() => undefined)
    throw error
  } finally {
    // The next create's uid, reserved once this one is done with its own.
    shared.uids.refill()
  }
}

/**
 * runsc's flags for a sandbox: its own root; no network but loopback, and host unix
 * sockets it may connect to through its mounts (the egress sockets); the configured
 * platform; no cgroups of runsc's own (it runs in the sandbox's, made before it); no overlay of runsc's own over the read-only root.
 */
export function runscFlags(runDir: string, platform: Toolchain['platform']): string[] {
  return [...rootFlags({run_dir: runDir}), '--network=none', '--host-uds=open', `--platform=${platform}`, '--ignore-cgroups', '--overlay2=none']
}
