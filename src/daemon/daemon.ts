import {chmod, mkdir, rm} from 'node:fs/promises'
import {dirname} from 'node:path'
import type {Server} from 'node:http'

import type {BackendName, RuntimeConfig} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {agentCacheDir} from '../agents/cache/layout.js'
import type {Resolver} from '../egress/addresses.js'
import {ImageService} from '../images/service.js'
import {imageCacheDir, ImageStore} from '../images/store.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import {createBackends} from '../sandbox/backends/index.js'
import {socketAnswers} from '../util/socket.js'
import {AgentPackages} from './agent-packages.js'
import {StateLock} from './lock.js'
import type {Logger} from './log.js'
import {SandboxManager} from './manager.js'
import {startPolicyWorker} from './requests.js'
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
  /** How long an ephemeral sandbox waits for its command; tests shorten it. */
  ephemeralAttachMs?: number
  /** The image cache; default $XDG_CACHE_HOME/cleanroom/images. */
  imageCacheDir?: string
  /** More roots the credential gateway trusts upstream; tests add their own TLS servers' CA. */
  upstreamCa?: readonly string[]
}

export interface RunningDaemon {
  manager: SandboxManager
  server: Server
  /** Stops listening and closes every connection; sandboxes keep running unless `shutdownSandboxes`. */
  close(options?: {shutdownSandboxes?: boolean}): Promise<void>
}

/**
 * Starts `cleanroom serve`: takes the state dir's lock (a second daemon on the same
 * state stops here, having read and written nothing), makes sure nobody else
 * answers on the socket, adopts the sandboxes on disk, then listens (mode 0600).
 */
export async function startDaemon(options: DaemonOptions): Promise<RunningDaemon> {
  const lock = await StateLock.acquire(
    options.stateDir,
    {pid: process.pid, socket: options.socketPath, version: options.version, started_at: new Date().toISOString()},
    options.log,
  )
  let manager: SandboxManager | undefined
  try {
    await mkdir(dirname(options.socketPath), {recursive: true, mode: 0o700})
    if (await socketAnswers(options.socketPath)) {
      // It does not hold this state dir's lock: another state dir's daemon, or one of a version from before the lock.
      throw new CleanroomError('daemon_already_running', `a cleanroom daemon already listens on ${options.socketPath} (one without this state dir's lock: of another state dir, or of an older cleanroom)`, {
        suggestions: [`Stop it first: cleanroom serve stop --host unix://${options.socketPath}`, 'Or give this one its own socket: cleanroom serve --listen unix:///path'],
      })
    }
    const backends: Map<BackendName, SandboxBackend> = createBackends(options.config)
    const images = new ImageService(new ImageStore(options.imageCacheDir ?? imageCacheDir()), () => manager?.list(true) ?? [])
    startPolicyWorker()
    manager = new SandboxManager(new StateStore(options.stateDir), backends, options.log, {
      images,
      ...(options.resolver ? {resolver: options.resolver} : {}),
      egressAuditFailure: options.config.egress.audit_failure,
      maxConnectionsPerSandbox: options.config.egress.max_connections_per_sandbox,
      ...(options.ephemeralAttachMs === undefined ? {} : {ephemeralAttachMs: options.ephemeralAttachMs}),
      ...(options.upstreamCa && {upstreamCa: options.upstreamCa}),
    })
    await manager.adopt()
    const agentPackages = new AgentPackages(options.agentCacheDir ?? agentCacheDir(), manager, options.log)
    const api = createApiServer({
      manager,
      backends,
      images,
      agentPackages,
      defaultBackend: options.config.default_backend,
      version: options.version,
      socketPath: options.socketPath,
      stateDir: options.stateDir,
      log: options.log,
    })
    await listenOnSocket(api.server, options.socketPath)
    options.log(`listening on unix://${options.socketPath} (pid ${process.pid}, state ${options.stateDir})`)
    const running = manager
    return {
      manager: running,
      server: api.server,
      async close({shutdownSandboxes = false} = {}) {
        await api.close()
        await rm(options.socketPath, {force: true})
        if (shutdownSandboxes) await running.removeAll()
        await running.close()
        await lock.release()
      },
    }
  } catch (error) {
    await manager?.close()
    await lock.release()
    throw error
  }
}

async function listenOnSocket(server: Server, socketPath: string): Promise<void> {
  // Nothing answers (checked under the lock): whatever is at the path is a leftover of a daemon that died.
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
