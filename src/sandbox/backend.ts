import type {Server} from 'node:net'
import type {Readable, Writable} from 'node:stream'

import type {BackendName} from '../config/schema.js'
import type {ImageRuntimeConfig} from '../images/manifest.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {ResourceRequest, SandboxResources} from './resources.js'
import type {WorkspaceBase} from '../workspace/base.js'
import type {Capabilities, ExecRequest, ExitStatus} from './types.js'

export interface ProvisionRequest {
  sandboxId: string
  policy: CompiledPolicy
  /** Host directory to show at /workspace, or null. */
  workspaceSource: string | null
  /** A directory owned by this sandbox for everything the backend keeps on disk; removed at terminate. */
  stateDir: string
  /** What the policy's `sandbox.resources` asks for: raises the runtime config's limits, up to its maximum. */
  resources?: ResourceRequest
  /** Where the backend says what the daemon's log should show (e.g. limits it cannot enforce). */
  log?: (message: string) => void
  /** Host directories to show read-only at `target` (the shared agent cache's entry); a backend that cannot must refuse. */
  readOnlyMounts?: ReadOnlyMount[]
  /** The policy's image, found in the cache: the sandbox's root filesystem. Absent: the host's (read-only). */
  image?: ProvisionImage
  /** The ports the daemon calls listenInside for once the sandbox runs: a backend may make them ready while it starts the sandbox. */
  listenPorts?: readonly number[]
}

/** An image a sandbox runs on (docs/images.md#running-sandboxes-on-an-image). */
export interface ProvisionImage {
  /** The policy's `repo@sha256:…`, for messages. */
  ref: string
  /** Its config digest: which root filesystem. */
  id: string
  /** The unpacked root filesystem in the cache, shared by every sandbox of the image and never written. */
  rootfs: string
  /** Its run settings: Env, WorkingDir and User are applied. */
  config: ImageRuntimeConfig
}

export interface ReadOnlyMount {
  /** A host directory the daemon vouches for (never a path a client named). */
  source: string
  /** An absolute path inside the sandbox, outside what the root filesystem already holds. */
  target: string
}

/** What a backend needs to find a sandbox again, stored in the sandbox record. */
export type BackendRuntime = Record<string, unknown>

/** A running process inside a sandbox. With a TTY, stderr is merged into stdout. */
export interface SandboxProcess {
  stdin: Writable
  stdout: Readable
  stderr: Readable | null
  resize(cols: number, rows: number): void
  signal(signal: NodeJS.Signals): void
  exited: Promise<ExitStatus>
}

/** Where a sandbox's changes to /workspace are, for `workspace diff`. */
export interface WorkspaceLayers {
  /** The overlay's upper layer: every file the sandbox wrote, whiteouts for what it deleted. */
  upper: string
  /** Workspace paths hidden at create time (git-ignored): not the sandbox's changes. */
  hidden: string[]
  /** Files the backend itself put in `upper` at create that still hold what it put there (the redacted .git/config): not the sandbox's changes either. */
  provided: string[]
  /** What the workspace started from, noted at create (src/workspace/base.ts); absent when nothing was noted. */
  base?: WorkspaceBase
}

export interface Availability {
  ok: boolean
  /** What the backend runs with, e.g. `bubblewrap 0.8.0; cleanroom-nsinit prebuilt for linux-x64: /path` */
  version?: string
  /** What is missing, and the fix. */
  problem?: string
  fix?: string
}

export interface SandboxBackend {
  readonly name: BackendName
  capabilities(): Capabilities
  /** Whether this machine can run the backend at all (binary present, namespaces allowed). */
  availability(): Promise<Availability>
  provision(request: ProvisionRequest): Promise<BackendRuntime>
  /** True when the sandbox described by `runtime` is still alive (after a daemon restart). */
  isAlive(runtime: BackendRuntime): Promise<boolean>
  exec(runtime: BackendRuntime, request: ExecRequest): Promise<SandboxProcess>
  /**
   * A server listening on 127.0.0.1:`port` inside the sandbox's network namespace whose
   * connections this process accepts: how the egress proxy is reachable from inside.
   */
  listenInside(runtime: BackendRuntime, port: number): Promise<Server>
  workspaceLayers(runtime: BackendRuntime): Promise<WorkspaceLayers>
  /** Unpacks a tar stream at `destination` inside the sandbox, as the sandbox user. */
  extractArchive(runtime: BackendRuntime, archive: Readable, destination: string): Promise<void>
  /** A tar stream of `path` inside the sandbox (a file or a directory). */
  readArchive(runtime: BackendRuntime, path: string): Promise<Readable>
  /** Kills every process of the sandbox and releases what it holds; the state dir is the caller's to remove. */
  terminate(runtime: BackendRuntime): Promise<void>
  /**
   * Kills whatever a sandbox left in `stateDir` (also a create cut short before its
   * runtime was recorded) and makes the dir removable. A sandbox long gone is no error.
   */
  reclaim(stateDir: string, runtime?: BackendRuntime): Promise<void>
  /** Calls `onExit` once, saying why, when the sandbox's init exits; the returned function stops watching. */
  watchExit(runtime: BackendRuntime, onExit: (why: string) => void): () => void
  /** Whether anything but the sandbox's own init runs in it: an execution, or a process one left behind. */
  hasWorkload(runtime: BackendRuntime): Promise<boolean>
  /** The limits in force for the sandbox, as its record shows them; null: none. */
  resourcesOf?(runtime: BackendRuntime): SandboxResources | null
  /**
   * Enforces the limits that need watching while the sandbox runs (linux-ns: its disk
   * limit). When one is passed the backend stops the sandbox's processes (its files
   * stay) and calls `onBreach` once, with the reason; the caller marks the sandbox failed.
   */
  watchLimits?(runtime: BackendRuntime, onBreach: (reason: string) => void, log?: (message: string) => void): void
  /** Releases what sandboxes that are gone still hold on the host (after a daemon was killed); called when a daemon starts. */
  reclaimLeftovers?(): Promise<void>
  /**
   * The daemon stops: let go of what this process holds for its sandboxes, those that run
   * on (a new daemon starts without it) and those yet to come (a host uid reserved for the next).
   */
  release?(): void | Promise<void>
}

export interface BackendOptions {
  /** From the runtime config's backends.<name>. */
  settings: Record<string, unknown>
}

export type {CompiledPolicy}
