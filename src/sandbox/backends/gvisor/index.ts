import type {Server} from 'node:net'

import type {BackendName, GvisorSettings} from '../../../config/schema.js'
import {DEFAULT_RESOURCES} from '../../../config/resources.js'
import {CleanroomError, messageOf} from '../../../errors/index.js'
import type {Availability, BackendRuntime, ProvisionRequest, SandboxBackend, SandboxProcess} from '../../backend.js'
import type {Capabilities, ExecRequest} from '../../types.js'
import {ExecBackedBackend} from '../base.js'
import {probeMachine, type Toolchain} from './availability.js'
import {GVISOR} from './descriptor.js'
import {startExec} from './exec.js'
import type {ExecServer} from './exec-server.js'
import {resolveCommand} from './exec-status.js'
import {listenInside} from './listen.js'
import {guestBinPath, SharedGuestBin, sweepGuestBins} from './guest-bin.js'
import {type DaemonShared, provisionSandbox, RUN_ROOT} from './provision.js'
import {type GvisorRuntime, isSandboxAlive, parseRuntime} from './runtime.js'
import {hasWorkload, reclaimSandbox, SWEEP_AFTER_MS, sweepRunDirs} from './reclaim.js'
import {killSandbox} from './terminate.js'
import {removeSandboxCgroup} from '../linux-ns/cgroups.js'
import {CgroupLimits} from '../linux-ns/limits.js'
import {killIfSame} from '../linux-ns/runtime.js'
import {HostUidReserve} from '../linux-ns/uid-reserve.js'
import {releaseHostUid} from '../linux-ns/uids.js'
import {InitPoller} from '../linux-ns/watch.js'
import {requireCapabilities} from '../../capabilities.js'

export type {GvisorRuntime} from './runtime.js'

/**
 * Sandboxes with gVisor's user-space kernel between the workload and the host: nsinit
 * builds the workspace overlay in a private mount namespace and becomes `runsc run --detach`;
 * an exec without a terminal is a child of the sandbox's exec server (exec-server.ts), any
 * other (a terminal, or a sandbox adopted after a restart) `runsc exec` of nsinit's `run`
 * mode inside. See docs/backends.md.
 */
export class GvisorBackend extends ExecBackedBackend<GvisorRuntime> implements SandboxBackend {
  readonly name: BackendName = 'gvisor'
  private toolchain?: Promise<Toolchain>
  private readonly poller = new InitPoller()
  private readonly limits: CgroupLimits
  /** By run dir: the ports whose forwarder a sandbox's init started, until the daemon first listens on them. */
  private readonly initForwarders = new Map<string, Set<number>>()
  /** What every create of this daemon uses: host uids claimed one ahead, and the copy of nsinit sandboxes bind. */
  private readonly guestBin = new SharedGuestBin(async () => (await this.tools()).nsinit, RUN_ROOT)
  private readonly shared: DaemonShared = {uids: new HostUidReserve(), guestBin: () => this.guestBin.dir()}
  /** By state dir (which a reclaim always has): the daemon's end of each exec server this daemon started (none for adopted sandboxes). */
  private readonly execServers = new Map<string, ExecServer>()
  /** By state dir: sandboxes this daemon started whose init has not yet said it is up (launch.ts). */
  private readonly starting = new Map<string, Promise<void>>()

  /** Without `resources`, the runtime config's default limits apply. */
  constructor(private readonly settings: Omit<GvisorSettings, 'resources'> & Partial<Pick<GvisorSettings, 'resources'>>) {
    super()
    this.limits = new CgroupLimits(settings.resources ?? DEFAULT_RESOURCES, 'gvisor')
  }

  capabilities(): Capabilities {
    const limits = this.limits.cgroups().ok
    return {...GVISOR.capabilities, 'resources.cpu': limits, 'resources.memory': limits, 'resources.disk': limits}
  }

  async availability(): Promise<Availability> {
    const probe = await probeMachine(this.settings)
    if (!probe.ok) return {ok: false, problem: probe.problem, fix: probe.fix}
    return {ok: true, version: `${probe.runscVersion}, platform ${probe.platform}; cleanroom-nsinit ${probe.nsinitOrigin}: ${probe.nsinit}`}
  }

  async provision(request: ProvisionRequest): Promise<BackendRuntime> {
    // Also when called without the daemon's check: never run a policy with less than it needs.
    requireCapabilities(this.name, request.policy, this.capabilities())
    const tools = await this.tools()
    const {runtime, execServer, ready} = await provisionSandbox(tools, this.shared, request, await this.limits.plan(request))
    this.initForwarders.set(runtime.run_dir, new Set(request.listenPorts))
    this.execServers.set(runtime.state_dir, execServer)
    this.starting.set(runtime.state_dir, ready)
    void ready.then(() => this.starting.get(runtime.state_dir) === ready && this.starting.delete(runtime.state_dir)).catch(() => undefined)
    return {...runtime}
  }

  protected parse(runtime: BackendRuntime): GvisorRuntime {
    return parseRuntime(runtime)
  }

  async isAlive(runtime: BackendRuntime): Promise<boolean> {
    return isSandboxAlive(parseRuntime(runtime))
  }

  async exec(runtime: BackendRuntime, request: ExecRequest): Promise<SandboxProcess> {
    const sandbox = parseRuntime(runtime)
    // Returned as soon as runsc had started it: nothing runs inside before its init is up (its ports listen).
    await this.starting.get(sandbox.state_dir)?.catch(async (error: unknown) => {
      if (await isSandboxAlive(sandbox)) throw error
      throw new CleanroomError('sandbox_failed', `the sandbox is gone: ${messageOf(error)}`, {cause: error})
    })
    const server = this.execServers.get(sandbox.state_dir)
    // A terminal is made by `nsinit run` inside (the exec server runs commands on its connections as they are).
    const served = server && !request.tty ? await server.start(resolveCommand(sandbox, request), () => isSandboxAlive(sandbox)) : undefined
    const started = served ?? (await startExec((await this.tools()).runsc, sandbox, request))
    void started.exited.finally(() => this.limits.execEnded(sandbox)).catch(() => undefined)
    return started
  }

  async listenInside(runtime: BackendRuntime, port: number): Promise<Server> {
    const sandbox = parseRuntime(runtime)
    const forwarderStarted = this.initForwarders.get(sandbox.run_dir)?.delete(port) === true
    return listenInside((await this.tools()).runsc, sandbox, port, {forwarderStarted})
  }

  async terminate(runtime: BackendRuntime): Promise<void> {
    const sandbox = parseRuntime(runtime)
    this.forget(sandbox)
    await this.limits.beforeKill(sandbox, () => killKernel(sandbox))
    // A sandbox is ended by pid even when runsc itself cannot be found any more.
    await killSandbox(await this.runsc(), sandbox)
    if (sandbox.cgroup) await removeSandboxCgroup(sandbox.cgroup)
    await releaseHostUid(sandbox.host_uid, sandbox.state_dir)
  }

  async reclaim(stateDir: string, runtime?: BackendRuntime): Promise<void> {
    const sandbox = runtime === undefined ? undefined : parseRuntimeOrUndefined(runtime)
    this.forget({state_dir: stateDir, run_dir: sandbox?.run_dir})
    if (sandbox) await this.limits.beforeKill(sandbox, () => killKernel(sandbox))
    await reclaimSandbox(await this.runsc(), stateDir, sandbox)
    // The cgroup goes once its processes are (found by the sandbox id when the runtime is lost).
    await this.limits.release(stateDir, sandbox && {state_dir: sandbox.state_dir, cgroup: sandbox.cgroup})
  }

  /** The disk watch of a sandbox with a disk limit; over it, the sandbox is frozen and its gVisor kernel killed, which ends everything in it. */
  watchLimits(runtime: BackendRuntime, onBreach: (reason: string) => void, log?: (message: string) => void): void {
    const sandbox = parseRuntime(runtime)
    this.limits.watch(sandbox, onBreach, () => killKernel(sandbox), log)
  }

  /**
   * A sandbox ends with its gVisor kernel, which runs no child of ours (`runsc run
   * --detach` exits once the sandbox runs): it is polled, for our own launches and adopted ones.
   */
  watchExit(runtime: BackendRuntime, onExit: (why: string) => void): () => void {
    const sandbox = parseRuntime(runtime)
    return this.poller.watch({init_pid: sandbox.sandbox_pid, init_start_time: sandbox.sandbox_start_time}, onExit)
  }

  /**
   * Run dirs left by sandboxes that are gone (their uids are the registry's sweep, linux-ns,
   * machine-wide), and the copies of nsinit of other cleanroom builds no sandbox binds.
   */
  async reclaimLeftovers(): Promise<void> {
    await sweepRunDirs(await this.runsc())
    const own = await this.tools().then(async (tools) => guestBinPath(tools.nsinit, RUN_ROOT)).catch(() => undefined)
    if (own !== undefined) await sweepGuestBins(RUN_ROOT, own, SWEEP_AFTER_MS)
  }

  /**
   * The exec servers inside see their connection end and exit (a restarted daemon runs
   * execs with `runsc exec`), and the host uid reserved for the next create is given back.
   */
  async release(): Promise<void> {
    for (const server of this.execServers.values()) server.close()
    this.execServers.clear()
    this.starting.clear()
    this.initForwarders.clear()
    await this.shared.uids.close()
  }

  async hasWorkload(runtime: BackendRuntime): Promise<boolean> {
    return hasWorkload(await this.runsc(), parseRuntime(runtime))
  }

  private forget(sandbox: {state_dir: string; run_dir?: string}): void {
    if (sandbox.run_dir !== undefined) this.initForwarders.delete(sandbox.run_dir)
    this.execServers.get(sandbox.state_dir)?.close()
    this.execServers.delete(sandbox.state_dir)
    this.starting.delete(sandbox.state_dir)
  }

  /** A sandbox is ended by pid even when runsc itself cannot be found any more. */
  private async runsc(): Promise<string> {
    return (await this.tools().catch(() => undefined))?.runsc ?? this.settings.runsc_path
  }

  /** The machine's runsc and nsinit, probed once they are found; until then, every call says what is missing. */
  private async tools(): Promise<Toolchain> {
    this.toolchain ??= probeMachine(this.settings).then((probe) => {
      if (probe.ok) return probe
      this.toolchain = undefined
      throw new CleanroomError('backend_unavailable', `the gvisor backend cannot run on this machine: ${probe.problem}`, {suggestions: [probe.fix]})
    })
    return this.toolchain
  }
}

/** A runtime record too broken to use: the launch record in the state dir is then all there is to go on. */
function parseRuntimeOrUndefined(runtime: BackendRuntime): GvisorRuntime | undefined {
  try {
    return parseRuntime(runtime)
  } catch {
    return undefined
  }
}

/** SIGKILL to the gVisor kernel (queued while its cgroup is frozen): every process inside goes with it, and the gofer then ends. */
function killKernel(runtime: GvisorRuntime): Promise<void> {
  return killIfSame(runtime.sandbox_pid, runtime.sandbox_start_time)
}
