import {chmod, mkdir, rm} from 'node:fs/promises'
import {dirname} from 'node:path'
import type {Server} from 'node:http'

import type {BackendName, RuntimeConfig} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {agentCacheDir} from '../agents/cache/layout.js'
import type {Resolver} from '../egress/addresses.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import {createBackends} from '../sandbox/backends/index.js'
import {socketAnswers} from '../util/socket.js'
import {type Logger, SandboxManager} from './manager.js'
import {AgentPackages} from './agent-packages.js'
import {createApiServer} from './server.js'
import {StateStore} from './state.js'

export interface DaemonOptions {
  socketPath: string
  stateDir: string
  config: RuntimeConfig
  version: string
  log: Logger
  /** Name resolution for the egress proxies; tests map names to local addresses. */
  resolver?: Resolver
  /** The shared agent cache; default $CLEANROOM_CACHE_DIR/agents, else $XDG_CACHE_HOME/cleanroom/agents. */
  agentCacheDir?: string
}

export interface RunningDaemon {
  manager: SandboxManager
  server: Server
  /** Stops listening; sandboxes keep running unless `shutdownSandboxes`. */
  close(options?: {shutdownSandboxes?: boolean}): Promise<void>
}

/** Starts `cleanroom serve`: adopts the sandboxes on disk, then listens on the unix socket (mode 0600). */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const backends: Map<BackendName, SandboxBackend> = createBackends(options.config)
  const manager = new SandboxManager(new StateStore(options.stateDir), backends, options.log, {
    resolver: options.resolver,
    maxConnectionsPerSandbox: options.config.egress.max_connections_per_sandbox,
  })
  await manager.adopt()

  const agentPackages = new AgentPackages(options.agentCacheDir ?? agentCacheDir(), manager, options.log)
  const server = createApiServer({manager, backends, defaultBackend: options.config.default_backend, version: options.version, agentPackages})
  await listenOnSocket(server, options.socketPath)
  options.log(`listening on unix://${options.socketPath} (pid ${process.pid})`)

  return {
    manager,
    server,
    async close({shutdownSandboxes = false} = {}) {
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
      await rm(options.socketPath, {force: true})
      if (shutdownSandboxes) await manager.removeAll()
      await manager.closeEgress()
    },
  }
}

async function listenOnSocket(server: Server, socketPath: string): Promise<void> {
  await mkdir(dirname(socketPath), {recursive: true, mode: 0o700})
  if (await socketAnswers(socketPath)) {
    throw new CleanroomError('usage', `a cleanroom daemon is already listening on ${socketPath}`, {
      suggestions: ['Use the running daemon, or stop it first'],
    })
  }
  // Nothing answers: whatever is at the path is a leftover of a daemon that died.
  await rm(socketPath, {force: true})
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    // The directory is 0700, so the socket is private from the start; the chmod below is for the socket itself.
    server.listen(socketPath, () => {
      server.off('error', reject)
      resolve()
    })
  })
  await chmod(socketPath, 0o600)
}
