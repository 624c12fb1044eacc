import {chmod} from 'node:fs/promises'

import type {SandboxLimits} from '../../resources.js'
import type {CgroupHost} from './cgroup-host.js'
import {createSandboxCgroup, removeSandboxCgroup, type SandboxCgroup} from './cgroups.js'
import {claimHostUid, releaseHostUid} from './uids.js'

/** What a sandbox holds on the host besides its state dir. */
export interface HostResources {
  /** Root daemon: the host uid (= gid) claimed machine-wide for the sandbox. */
  hostUid?: number
  /** Its cgroup with its limits set, when they are enforced. */
  cgroup?: SandboxCgroup
}

/** The limits to enforce and the hierarchy to do it in; undefined: none (no cgroups here). */
export interface LimitPlan {
  limits: SandboxLimits
  host: CgroupHost
}

/**
 * Claims the sandbox's host uid (root daemon; a non-root one keeps the state dir 0700)
 * with `claim` (the daemon's reservation, uid-reserve.ts; else a claim made now),
 * then creates its cgroup: the claim comes first, so a sweep of leftover cgroups never
 * takes a cgroup whose sandbox is being made. Nothing is left held on failure.
 */
export async function acquireHostResources(
  sandboxId: string,
  stateDir: string,
  root: boolean,
  plan: LimitPlan | undefined,
  claim: (sandboxId: string, stateDir: string) => Promise<number> = claimHostUid,
): Promise<HostResources> {
  if (!root) {
    await chmod(stateDir, 0o700)
    return {}
  }
  const hostUid = await claim(sandboxId, stateDir)
  if (plan === undefined) return {hostUid}
  try {
    return {hostUid, cgroup: await createSandboxCgroup(plan.host, sandboxId, plan.limits)}
  } catch (error) {
    await releaseHostUid(hostUid, stateDir).catch(() => undefined)
    throw error
  }
}

/** Gives back what `acquireHostResources` took, once the sandbox's processes are gone. */
export async function releaseHostResources(held: HostResources, stateDir: string): Promise<void> {
  if (held.cgroup) await removeSandboxCgroup(held.cgroup)
  if (held.hostUid !== undefined) await releaseHostUid(held.hostUid, stateDir)
}
