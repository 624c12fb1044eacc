import {stat, statfs} from 'node:fs/promises'
import {availableParallelism, totalmem} from 'node:os'
import {basename, dirname} from 'node:path'

import type {ResourceSettings} from '../../../config/resources.js'
import type {BackendName} from '../../../config/schema.js'
import {CleanroomError} from '../../../errors/index.js'
import type {ProvisionRequest} from '../../backend.js'
import {capabilityMismatch} from '../../capabilities.js'
import {planLimits, RESOURCE_CAPABILITIES, type ResourceRequest} from '../../resources.js'
import {type CgroupProbe, probeCgroups} from './cgroup-host.js'
import {isFrozen, removeSandboxCgroup, sandboxCgroupOf, sweepSandboxCgroups, thawSandboxCgroup} from './cgroups.js'
import {DiskWatch} from './disk-watch.js'
import {type HostResources, type LimitPlan, releaseHostResources} from './host-resources.js'
import type {SandboxResources} from '../../resources.js'
import type {SandboxCgroup} from './cgroups.js'
import {claimedSandboxIds, HOST_UID_RANGE, reclaimStaleUids} from './uids.js'

/** What a sandbox's runtime record says about its limits (linux-ns and gvisor record the same fields). */
export interface LimitedRuntime {
  state_dir: string
  cgroup?: SandboxCgroup
  resources?: SandboxResources | null
}

/**
 * The resource limits of a backend's sandboxes (linux-ns, gvisor): what this machine can
 * enforce (cgroups, probed once), each sandbox's limits from the runtime config and its
 * policy, the disk watches, and the clean-up of what killed daemons left
 * (docs/backends.md#resource-limits).
 */
export class CgroupLimits {
  private probe?: CgroupProbe
  private warned = false
  private readonly watches = new Map<string, DiskWatch>()

  constructor(
    private readonly settings: ResourceSettings,
    private readonly backend: BackendName = 'linux-ns',
  ) {}

  /** Whether cgroups can be managed here, and if not, why. */
  cgroups(): CgroupProbe {
    this.probe ??= probeCgroups()
    return this.probe
  }

  /**
   * The limits for a new sandbox, or undefined when this machine cannot enforce any:
   * then a policy that asks for some is refused (fail closed), and the runtime config's
   * defaults are only warned about, once per daemon.
   */
  async plan(request: ProvisionRequest): Promise<LimitPlan | undefined> {
    const probe = this.cgroups()
    if (!probe.ok) {
      refuseRequest(this.backend, request.resources, probe.problem)
      if (!this.warned) {
        this.warned = true
        request.log?.(`resource limits are off: ${probe.problem}; sandboxes run without the limits of backends.${this.backend}.resources (docs/backends.md#resource-limits)`)
      }
      return undefined
    }
    const fs = await statfs(dirname(request.stateDir))
    const machine = {memory_bytes: totalmem(), cpus: availableParallelism(), disk_bytes: fs.blocks * fs.bsize}
    return {limits: planLimits(this.settings, request.resources, machine, this.backend), host: probe.host}
  }

  /** Starts the disk watch of a sandbox with a disk limit (at create, and again when a new daemon adopts it). */
  watch(runtime: LimitedRuntime, onBreach: (reason: string) => void, killInit: () => Promise<void>, log: (message: string) => void = () => undefined): void {
    const {cgroup} = runtime
    const limit = runtime.resources?.disk_bytes
    if (!cgroup || limit === null || limit === undefined || this.watches.has(runtime.state_dir)) return
    const stopProcesses = async () => {
      await killInit()
      await thawSandboxCgroup(cgroup)
    }
    const watch = new DiskWatch(runtime.state_dir, cgroup, limit, onBreach, stopProcesses, log)
    this.watches.set(runtime.state_dir, watch)
    watch.start()
  }

  /** An exec ended: what it wrote is measured soon. */
  execEnded(runtime: LimitedRuntime): void {
    this.watches.get(runtime.state_dir)?.nudge()
  }

  /**
   * Before the sandbox is killed: its watch stops, and a frozen sandbox gets SIGKILL
   * queued to its init and is thawed, so it dies at once (on v1 a frozen process cannot
   * die) without running another instruction.
   */
  async beforeKill(runtime: LimitedRuntime, killInit: () => Promise<void>): Promise<void> {
    this.watches.get(runtime.state_dir)?.stop()
    this.watches.delete(runtime.state_dir)
    if (runtime.cgroup && (await isFrozen(runtime.cgroup))) {
      await killInit()
      await thawSandboxCgroup(runtime.cgroup)
    }
  }

  /**
   * Gives back the uid claim and cgroup of a sandbox whose processes are gone: from its
   * runtime, or, for a create cut short before its runtime was recorded, found from its
   * state dir (its group is the claimed uid; the claim is only released if it names that dir).
   */
  async release(stateDir: string, runtime: (LimitedRuntime & {host_uid?: number}) | undefined): Promise<void> {
    if (runtime) return releaseHostResources({hostUid: runtime.host_uid, cgroup: runtime.cgroup}, stateDir)
    if (process.geteuid?.() !== 0) return
    const held: HostResources = {}
    const gid = await stat(stateDir).then((stats) => stats.gid, () => undefined)
    if (gid !== undefined && gid >= HOST_UID_RANGE.first && gid <= HOST_UID_RANGE.last) held.hostUid = gid
    const probe = this.cgroups()
    if (probe.ok) held.cgroup = sandboxCgroupOf(probe.host, basename(stateDir))
    await releaseHostResources(held, stateDir)
  }

  /**
   * What daemons that were killed left: uid claims whose daemon and processes are gone
   * (with their sandboxes' cgroups), and empty sandbox cgroups no claim names.
   */
  async reclaimLeftovers(): Promise<void> {
    if (process.geteuid?.() !== 0) return
    const stale = await reclaimStaleUids()
    const probe = this.cgroups()
    if (!probe.ok) return
    for (const {claim} of stale) if (claim) await removeSandboxCgroup(sandboxCgroupOf(probe.host, claim.sandbox_id))
    const claimed = await claimedSandboxIds()
    await sweepSandboxCgroups(probe.host, (sandboxId) => claimed.has(sandboxId))
  }
}

/** A policy asking for limits this machine cannot enforce is refused, naming what is missing. */
function refuseRequest(backend: BackendName, request: ResourceRequest | undefined, problem: string): void {
  if (request === undefined) return
  const missing = (Object.keys(request) as (keyof ResourceRequest)[]).map((key) => RESOURCE_CAPABILITIES[key])
  if (missing.length === 0) return
  throw new CleanroomError('backend_capability_mismatch', `${capabilityMismatch(backend, missing)} (${problem})`, {
    details: {backend, missing},
    suggestions: ['Run the daemon as root on a machine with cgroups (see cleanroom doctor)', 'Or remove sandbox.resources from cleanroom.yaml'],
  })
}
