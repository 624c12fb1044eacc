import type {ChildProcess} from 'node:child_process'
import type {Server} from 'node:net'

import {DEFAULT_RESOURCES} from '../../../config/resources.js'
import type {BackendName, LinuxNsSettings} from '../../../config/schema.js'
import {CleanroomError} from '../../../errors/index.js'
import type {Availability, BackendRuntime, ProvisionRequest, SandboxBackend, SandboxProcess} from '../../backend.js'
import type {Capabilities, ExecRequest} from '../../types.js'
import {requireCapabilities} from '../../capabilities.js'
import {ExecBackedBackend} from '../base.js'
import {probeMachine, type Toolchain} from './availability.js'
import {LINUX_NS} from './descriptor.js'
import {startExec} from './exec.js'
import {HostUidReserve} from './uid-reserve.js'
import {releaseHostResources} from './host-resources.js'
import {CgroupLimits} from './limits.js'
import {listenInside} from './listen.js'
import {provisionSandbox} from './provision.js'
import {isSandboxAlive, killIfSame, parseRuntime, type LinuxNsRuntime} from './runtime.js'
import {killLaunchGroup, killSandbox, makeRemovable} from './terminate.js'
import {hasWorkload, InitPoller} from './watch.js'

export type {LinuxNsRuntime} from './runtime.js'

/**
 * Sandboxes made of Linux namespaces: nsinit builds the workspace overlay in a private
 * mount namespace and becomes bwrap, whose init holds the namespaces; each exec joins
 * them through nsinit. See docs/backends.md.
 */
export class LinuxNsBackend extends ExecBackedBackend<LinuxNsRuntime> implements SandboxBackend {
  readonly name: BackendName = 'linux-ns'
  /** The outer bwrap of each sandbox this process started, to reap at terminate. */
  private readonly children = new Map<string, ChildProcess>()
  private readonly poller = new InitPoller()
  private toolchain?: Promise<Toolchain>
  private readonly limits: CgroupLimits
  /** A root daemon's host uids, claimed one ahead of its creates. */
  private readonly uids = new HostUidReserve()

  /** Without `resources`, the runtime config's default limits apply. */
  constructor(private readonly settings: Omit<LinuxNsSettings, 'resources'> & Partial<Pick<LinuxNsSettings, 'resources'>>) {
    super()
    this.limits = new CgroupLimits(settings.resources ?? DEFAULT_RESOURCES)
  }

  capabilities(): Capabilities {
    const limits = this.limits.cgroups().ok
    return {...LINUX_NS.capabilities, 'resources.cpu': limits, 'resources.memory': limits, 'resources.disk': limits}
  }

  async availability(): Promise<Availability> {
    const probe = await probeMachine(this.settings)
    return probe.ok ? {ok: true, version: `${probe.bwrapVersion}; cleanroom-nsinit ${probe.nsinitOrigin}: ${probe.nsinit}`} : {ok: false, problem: probe.problem, fix: probe.fix}
  }

  async provision(request: ProvisionRequest): Promise<BackendRuntime> {
    // Also when called without the daemon's check: never run a policy with less than it needs.
    requireCapabilities(this.name, request.policy, this.capabilities())
    const tools = await this.tools()
    const {runtime, child} = await provisionSandbox(tools, request, await this.limits.plan(request), (id, dir) => this.uids.claim(id, dir)).finally(() => {
      // The next create's uid (a root daemon's), reserved once this one is done with its own.
      if (process.getuid?.() === 0) this.uids.refill()
    })
    const key = childKey(runtime)
    this.children.set(key, child)
    child.once('exit', () => this.children.delete(key))
    return {...runtime}
  }

  protected parse(runtime: BackendRuntime): LinuxNsRuntime {
    return parseRuntime(runtime)
  }

  async isAlive(runtime: BackendRuntime): Promise<boolean> {
    return isSandboxAlive(parseRuntime(runtime))
  }

  async exec(runtime: BackendRuntime, request: ExecRequest): Promise<SandboxProcess> {
    const sandbox = parseRuntime(runtime)
    const started = await startExec((await this.tools()).nsinit, sandbox, request)
    void started.exited.finally(() => this.limits.execEnded(sandbox)).catch(() => undefined)
    return started
  }

  async listenInside(runtime: BackendRuntime, port: number): Promise<Server> {
    return listenInside((await this.tools()).nsinit, parseRuntime(runtime), port)
  }

  async terminate(runtime: BackendRuntime): Promise<void> {
    const sandbox = parseRuntime(runtime)
    await this.limits.beforeKill(sandbox, () => killIfSame(sandbox.init_pid, sandbox.init_start_time))
    await killSandbox(sandbox, this.children.get(childKey(sandbox)))
    if (sandbox.userns_mode) await makeRemovable(sandbox.state_dir)
    await releaseHostResources({hostUid: sandbox.host_uid, cgroup: sandbox.cgroup}, sandbox.state_dir)
  }

  watchLimits(runtime: BackendRuntime, onBreach: (reason: string) => void, log?: (message: string) => void): void {
    const sandbox = parseRuntime(runtime)
    this.limits.watch(sandbox, onBreach, () => killIfSame(sandbox.init_pid, sandbox.init_start_time), log)
  }

  async reclaimLeftovers(): Promise<void> {
    await this.limits.reclaimLeftovers()
  }

  async reclaim(stateDir: string, runtime?: BackendRuntime): Promise<void> {
    const sandbox = runtime === undefined ? undefined : parseRuntimeOrUndefined(runtime)
    // With a runtime the launch's whole group is the bwrap and the init: killing those is enough.
    if (sandbox) {
      await this.limits.beforeKill(sandbox, () => killIfSame(sandbox.init_pid, sandbox.init_start_time))
      await killSandbox(sandbox, this.children.get(childKey(sandbox)))
    } else {
      await killLaunchGroup(stateDir)
    }
    if (process.getuid?.() !== 0) await makeRemovable(stateDir)
    await this.limits.release(stateDir, sandbox)
  }

  /** Our own launches end with their outer bwrap, our child: its exit says so at once. Adopted ones are polled. */
  watchExit(runtime: BackendRuntime, onExit: (why: string) => void): () => void {
    const sandbox = parseRuntime(runtime)
    const child = this.children.get(childKey(sandbox))
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return this.poller.watch(sandbox, onExit)
    const listener = (code: number | null, signal: NodeJS.Signals | null) => {
      onExit(`its init process exited (the sandbox's bwrap ended with ${signal ? `signal ${signal}` : `exit code ${code}`})`)
    }
    child.once('exit', listener)
    return () => child.off('exit', listener)
  }

  /** The host uid reserved for the next create is given back. */
  async release(): Promise<void> {
    await this.uids.close()
  }

  async hasWorkload(runtime: BackendRuntime): Promise<boolean> {
    return hasWorkload(parseRuntime(runtime))
  }

  /** The machine's bwrap and nsinit, probed once they are found; until then, every call says what is missing. */
  private async tools(): Promise<Toolchain> {
    this.toolchain ??= probeMachine(this.settings).then((probe) => {
      if (probe.ok) return probe
      this.toolchain = undefined
      throw new CleanroomError('backend_unavailable', `the linux-ns backend cannot run on this machine: ${probe.problem}`, {suggestions: [probe.fix]})
    })
    return this.toolchain
  }
}

/** A runtime record too broken to use: the launch record in the state dir is then all there is to go on. */
function parseRuntimeOrUndefined(runtime: BackendRuntime): LinuxNsRuntime | undefined {
  try {
    return parseRuntime(runtime)
  } catch {
    return undefined
  }
}

function childKey(runtime: LinuxNsRuntime): string {
  return `${runtime.init_pid}:${runtime.init_start_time}`
}
