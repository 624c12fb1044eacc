import type {Readable} from 'node:stream'

import {extractArchive, readArchive} from '../archive.js'
import type {BackendRuntime, SandboxProcess, WorkspaceLayers} from '../backend.js'
import type {SandboxResources} from '../resources.js'
import type {ExecRequest} from '../types.js'
import {readWorkspaceLayers} from '../workspace-view.js'

/** What every backend's runtime record holds: where its state is, and the limits it runs with. */
export interface RuntimeBase {
  state_dir: string
  resources?: SandboxResources | null
}

/**
 * What backends do alike once they can run a command in a sandbox: archives in and
 * out are a tar running inside (src/sandbox/archive.ts), the workspace's layers are
 * read from the state dir, the limits from the runtime record.
 */
export abstract class ExecBackedBackend<Runtime extends RuntimeBase> {
  abstract exec(runtime: BackendRuntime, request: ExecRequest): Promise<SandboxProcess>

  /** The backend's own runtime record, checked; throws on one that is not. */
  protected abstract parse(runtime: BackendRuntime): Runtime

  async workspaceLayers(runtime: BackendRuntime): Promise<WorkspaceLayers> {
    return readWorkspaceLayers(this.parse(runtime).state_dir)
  }

  async extractArchive(runtime: BackendRuntime, archive: Readable, destination: string): Promise<void> {
    await extractArchive((request) => this.exec(runtime, request), archive, destination)
  }

  async readArchive(runtime: BackendRuntime, path: string): Promise<Readable> {
    return readArchive((request) => this.exec(runtime, request), path)
  }

  resourcesOf(runtime: BackendRuntime): SandboxResources | null {
    return this.parse(runtime).resources ?? null
  }
}
