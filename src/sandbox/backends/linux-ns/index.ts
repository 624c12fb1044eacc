import type {ChildProcess} from 'node:child_process'
import type {Server} from 'node:net'
import type {Readable} from 'node:stream'

import type {BackendName, LinuxNsSettings} from '../../../config/schema.js'
import {CleanroomError} from '../../../errors/index.js'
import type {Availability, BackendRuntime, ProvisionRequest, SandboxBackend, SandboxProcess, WorkspaceLayers} from '../../backend.js'
import type {Capabilities, ExecRequest} from '../../types.js'
import {requireCapabilities} from '../../capabilities.js'
import {readWorkspaceLayers} from '../../workspace-view.js'
import {extractArchive, readArchive} from '../../archive.js'
import {probeMachine, type Toolchain} from './availability.js'
import {LINUX_NS} from './descriptor.js'
import {startExec} from './exec.js'
import {listenInside} from './listen.js'
import {provisionSandbox} from './provision.js'
import {isSandboxAlive, parseRuntime, type LinuxNsRuntime} from './runtime.js'
import {killSandbox, makeRemovable} from './terminate.js'

export type {LinuxNsRuntime} from './runtime.js'

/**
 * Sandboxes made of Linux namespaces: nsinit builds the workspace overlay in a private
 * mount namespace and becomes bwrap, whose init holds the namespaces; each exec joins
 * them through nsinit. See docs/backends.md.
 */
export class LinuxNsBackend implements SandboxBackend {
  readonly name: BackendName = 'linux-ns'
  /** The outer bwrap of each sandbox this process started, to reap at terminate. */
  private readonly children = new Map<string, ChildProcess>()
  private toolchain?: Promise<Toolchain>

  constructor(private readonly settings: LinuxNsSettings) {}

  capabilities(): Capabilities {
    return {...LINUX_NS.capabilities}
  }

  async availability(): Promise<Availability> {
    const probe = await probeMachine(this.settings)
    return probe.ok ? {ok: true, version: `${probe.bwrapVersion}; cleanroom-nsinit ${probe.nsinitOrigin}: ${probe.nsinit}`} : {ok: false, problem: probe.problem, fix: probe.fix}
  }

  async provision(request: ProvisionRequest): Promise<BackendRuntime> {
    // Also when called without the daemon's check: never run a policy with less than it needs.
    requireCapabilities(this.name, request.policy, this.capabilities())
    const {runtime, child} = await provisionSandbox(await this.tools(), request)
    const key = childKey(runtime)
    this.children.set(key, child)
    child.once('exit', () => this.children.delete(key))
    return {...runtime}
  }

  async isAlive(runtime: BackendRuntime): Promise<boolean> {
    return isSandboxAlive(parseRuntime(runtime))
  }

  async exec(runtime: BackendRuntime, request: ExecRequest): Promise<SandboxProcess> {
    return startExec((await this.tools()).nsinit, parseRuntime(runtime), request)
  }

  async listenInside(runtime: BackendRuntime, port: number): Promise<Server> {
    return listenInside((await this.tools()).nsinit, parseRuntime(runtime), port)
  }

  async workspaceLayers(runtime: BackendRuntime): Promise<WorkspaceLayers> {
    return readWorkspaceLayers(parseRuntime(runtime).state_dir)
  }

  async extractArchive(runtime: BackendRuntime, archive: Readable, destination: string): Promise<void> {
    await extractArchive((request) => this.exec(runtime, request), archive, destination)
  }

  async readArchive(runtime: BackendRuntime, path: string): Promise<Readable> {
    return readArchive((request) => this.exec(runtime, request), path)
  }

  async terminate(runtime: BackendRuntime): Promise<void> {
    const sandbox = parseRuntime(runtime)
    await killSandbox(sandbox, this.children.get(childKey(sandbox)))
    if (sandbox.userns_mode) await makeRemovable(sandbox.state_dir)
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

function childKey(runtime: LinuxNsRuntime): string {
  return `${runtime.init_pid}:${runtime.init_start_time}`
}
