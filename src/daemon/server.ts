import {createServer, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import type {Duplex} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import type {BackendName} from '../config/schema.js'
import {parseGrantRequest} from '../credentials/wire.js'
import {CleanroomError, isCleanroomError, messageOf} from '../errors/index.js'
import {errorJson} from '../errors/render.js'
import {auditCounts, readAudit} from '../egress/audit.js'
import {defaultSocketPath} from '../paths.js'
import type {ImageService} from '../images/service.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import type {SandboxRecord} from '../sandbox/types.js'
import {type AgentPackages, parseAgentPackageRequest} from './agent-packages.js'
import {attachProcess} from './attach.js'
import {badRequest, parseJsonObject, readJson, sendError, sendJson, statusOf} from './http.js'
import type {Logger} from './log.js'
import {imageRoutes} from './images-routes.js'
import type {SandboxManager} from './manager.js'
import {CLIENT_VERSION_HEADER, EXEC_UPGRADE, FrameType, readFirstFrame} from './protocol.js'
import {parseBackendName, parseExecRequest, parseSandboxPath, parseSandboxSource} from './requests.js'
import {CACHE_KINDS} from './system/caches.js'
import {diskUsage, parsePruneRequest, prune, type SystemContext} from './system/index.js'

export const API_VERSION = 'v1'
const RUN_OUTPUT_LIMIT = 16 << 20
/** How long a refused upgrade's answer may take to reach the client before the connection is cut. */
const REFUSAL_LINGER_MS = 2000

export interface DaemonContext {
  manager: SandboxManager
  backends: ReadonlyMap<BackendName, SandboxBackend>
  defaultBackend: BackendName
  version: string
  agentPackages: AgentPackages
  /** Where this daemon listens, for the commands its messages suggest. */
  socketPath: string
  /** The state dir: the daemon's log is there. */
  stateDir: string
  log: Logger
  images: ImageService
}

/** The API server and the one way to stop it: every connection, upgraded streams included, is closed. */
export interface ApiServer {
  server: Server
  close(): Promise<void>
}

type Handler = (req: IncomingMessage, res: ServerResponse, params: string[], url: URL) => Promise<void>

/** The daemon's HTTP API (see docs/api.md). Every route answers JSON; errors are `{error: {code, message}}`. */
export function createApiServer(context: DaemonContext): ApiServer {
  const routes: [string, RegExp, Handler][] = [
    ['GET', /^\/v1\/ping$/, async (_req, res) => sendJson(res, 200, {version: context.version, api: API_VERSION, pid: process.pid})],
    ['GET', /^\/v1\/backends$/, async (_req, res) => sendJson(res, 200, await describeBackends(context))],
    ['POST', /^\/v1\/sandboxes$/, async (req, res) => sendJson(res, 201, publicRecord(await createSandbox(context, await readJson(req))))],
    ['GET', /^\/v1\/sandboxes$/, async (_req, res, _params, url) => {
      sendJson(res, 200, context.manager.list(url.searchParams.get('all') === 'true').map(publicRecord))
    }],
    ['GET', /^\/v1\/sandboxes\/([^/]+)$/, async (_req, res, [id]) => {
      const record = context.manager.get(id!)
      const egress = record.status === 'stopped' ? undefined : {...(await auditCounts(context.manager.auditLog(id!))), ...context.manager.egressState(id!)}
      sendJson(res, 200, {...publicRecord(record), ...(egress ? {egress} : {})})
    }],
    ['GET', /^\/v1\/sandboxes\/([^/]+)\/egress$/, async (req, res, [id], url) => streamAudit(context, req, res, id!, url.searchParams.get('follow') === 'true')],
    ['DELETE', /^\/v1\/sandboxes\/([^/]+)$/, async (_req, res, [id]) => sendJson(res, 200, publicRecord(await context.manager.remove(id!)))],
    ['POST', /^\/v1\/sandboxes\/([^/]+)\/execs$/, async (req, res, [id]) => {
      const pending = context.manager.createExec(id!, parseExecRequest(await readJson(req)))
      sendJson(res, 201, {exec_id: pending.exec_id, sandbox_id: pending.sandbox_id})
    }],
    ['POST', /^\/v1\/sandboxes\/([^/]+)\/run$/, async (req, res, [id]) => sendJson(res, 200, await runToCompletion(context, id!, await readJson(req), res))],
    ['PUT', /^\/v1\/sandboxes\/([^/]+)\/archive$/, async (req, res, [id], url) => {
      await context.manager.extractArchive(id!, req, parseSandboxPath(url.searchParams.get('path')))
      sendJson(res, 200, {extracted: true})
    }],
    ['GET', /^\/v1\/sandboxes\/([^/]+)\/workspace\/diff$/, async (_req, res, [id]) => sendWorkspaceChanges(context, res, id!, 'patch')],
    ['GET', /^\/v1\/sandboxes\/([^/]+)\/workspace\/changes$/, async (_req, res, [id]) => sendWorkspaceChanges(context, res, id!, 'json')],
    ['GET', /^\/v1\/sandboxes\/([^/]+)\/workspace\/archive$/, async (_req, res, [id]) => sendWorkspaceChanges(context, res, id!, 'archive')],
    ['POST', /^\/v1\/sandboxes\/([^/]+)\/credentials$/, async (req, res, [id]) => {
      sendJson(res, 200, await context.manager.grantCredentials(id!, parseGrantRequest(await readJson(req))))
    }],
    ['POST', /^\/v1\/agent-packages$/, async (req, res) => {
      sendJson(res, 200, await context.agentPackages.resolve(parseAgentPackageRequest(await readJson(req), context.defaultBackend)))
    }],
    ['GET', /^\/v1\/sandboxes\/([^/]+)\/archive$/, async (_req, res, [id], url) => {
      const archive = await context.manager.readArchive(id!, parseSandboxPath(url.searchParams.get('path')))
      res.writeHead(200, {'content-type': 'application/x-tar'})
      await pipeline(archive, res)
    }],
    ['GET', /^\/v1\/system\/df$/, async (_req, res) => sendJson(res, 200, await diskUsage(systemContext(context)))],
    ['POST', /^\/v1\/system\/prune$/, async (req, res) => sendJson(res, 200, await prune(systemContext(context), parsePruneRequest(await readJson(req))))],
    ...imageRoutes(context.images),
  ]

  const server = createServer((req, res) => {
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://cleanroom')
        if (url.pathname !== '/v1/ping') requireClientVersion(context, req)
        const match = findRoute(routes, req.method ?? 'GET', url.pathname)
        if (!match) {
          req.resume()
          sendJson(res, 404, {error: {code: 'bad_request', message: `no route ${req.method} ${url.pathname}`, suggestions: ['See docs/api.md']}})
          return
        }
        await match.handler(req, res, match.params, url)
      } catch (error) {
        req.resume()
        sendError(res, error)
      }
    })()
  })

  // Upgraded connections leave the HTTP server's books: without this set, nothing could close them.
  const streams = new Set<Duplex>()
  server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    streams.add(socket)
    socket.once('close', () => streams.delete(socket))
    void upgradeExec(context, req, socket, head)
  })
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
        for (const socket of streams) socket.destroy()
      }),
  }
}

function findRoute(routes: [string, RegExp, Handler][], method: string, path: string): {handler: Handler; params: string[]} | undefined {
  for (const [routeMethod, pattern, handler] of routes) {
    const match = pattern.exec(path)
    if (match && routeMethod === method) return {handler, params: match.slice(1).map((part) => decodePathPart(part))}
  }
  return undefined
}

/** A percent-decoded path segment; a malformed escape is the client's error (400), not ours. */
function decodePathPart(part: string): string {
  try {
    return decodeURIComponent(part)
  } catch {
    throw badRequest(`malformed percent-escape in the request path: ${JSON.stringify(part.slice(0, 200))}`)
  }
}

/**
 * The two ways to reach an execution's stream: attach to one created with
 * POST …/execs, or start one and attach in a single round trip — the request
 * is the first frame sent after the upgrade request, without waiting for the 101.
 * Every refusal is an HTTP error response, so nothing has started when one comes.
 */
async function upgradeExec(context: DaemonContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  socket.on('error', () => undefined)
  const path = new URL(req.url ?? '/', 'http://cleanroom').pathname
  const attach = /^\/v1\/execs\/([^/]+)\/attach$/.exec(path)
  const start = /^\/v1\/sandboxes\/([^/]+)\/exec$/.exec(path)
  if ((!attach && !start) || req.headers.upgrade?.toLowerCase() !== EXEC_UPGRADE) {
    refuseUpgrade(socket, badRequest(`upgrade to ${EXEC_UPGRADE} at /v1/sandboxes/<id>/exec or /v1/execs/<exec_id>/attach`))
    return
  }
  let process
  let sandboxId: string
  let rest = head
  try {
    requireClientVersion(context, req)
    if (attach) {
      ;({sandboxId, process} = await context.manager.startExec(decodePathPart(attach[1]!)))
    } else {
      sandboxId = decodePathPart(start![1]!)
      context.manager.get(sandboxId)
      const first = await readFirstFrame(socket, head).catch((error: unknown) => {
        throw badRequest(messageOf(error))
      })
      rest = first.rest
      if (first.frame.type !== FrameType.start) throw badRequest('the first frame must be a start frame carrying the exec request')
      process = await context.manager.run(sandboxId, parseExecRequest(parseJsonObject(first.frame.payload)))
    }
  } catch (error) {
    refuseUpgrade(socket, error)
    return
  }
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: ${EXEC_UPGRADE}\r\nConnection: Upgrade\r\n\r\n`)
  if (rest.length > 0) socket.unshift(rest)
  const started = process
  attachProcess(socket, started, () => context.manager.clientGone(sandboxId, started))
}

/**
 * A CLI of another version than this daemon gets a clear answer instead of
 * requests the two may understand differently. Clients that do not say their
 * version (curl, the API) are served; so is /v1/ping, which reports ours.
 */
function requireClientVersion(context: DaemonContext, req: IncomingMessage): void {
  const client = req.headers[CLIENT_VERSION_HEADER]
  if (client === undefined || client === context.version) return
  const host = context.socketPath === defaultSocketPath() ? '' : ` --host unix://${context.socketPath}`
  throw new CleanroomError('daemon_version_mismatch', `the running cleanroom daemon is version ${context.version} (pid ${process.pid}) and this cleanroom is ${String(client)}`, {
    suggestions: [`Stop the old daemon: cleanroom serve stop${host} (sandboxes keep running; the next cleanroom command starts a daemon of this version, which takes them over)`],
  })
}

/**
 * Answers a refused upgrade and closes the connection. What the client sent is read
 * and dropped (closing a unix socket with unread bytes resets it, and the client
 * could lose the answer); the connection closes when the client hangs up, or after
 * a linger when it never does.
 */
function refuseUpgrade(socket: Duplex, error: unknown): void {
  const known = isCleanroomError(error) ? error : new CleanroomError('backend_failed', messageOf(error))
  const body = JSON.stringify(errorJson(known))
  socket.resume()
  socket.end(`HTTP/1.1 ${statusOf(known)} Error\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`)
  setTimeout(() => socket.destroy(), REFUSAL_LINGER_MS).unref()
}

async function createSandbox(context: DaemonContext, body: Record<string, unknown>): Promise<SandboxRecord> {
  const backend = parseBackendName(body.backend, context.defaultBackend)
  if (body.allow_all !== undefined && typeof body.allow_all !== 'boolean') throw badRequest('allow_all must be true or false')
  if (body.ephemeral !== undefined && typeof body.ephemeral !== 'boolean') throw badRequest('ephemeral must be true or false')
  const agentPackage = body.agent_package === undefined ? undefined : await context.agentPackages.mount(body.agent_package)
  return context.manager.create({backend, ...(await parseSandboxSource(body)), allowAll: body.allow_all === true, ephemeral: body.ephemeral === true, ...(agentPackage ? {agentPackage} : {})})
}

/** The curl-friendly way to run a command: waits for it and returns its output as text. */
async function runToCompletion(context: DaemonContext, id: string, body: Record<string, unknown>, res: ServerResponse): Promise<Record<string, unknown>> {
  const request = parseExecRequest({...body, tty: false})
  if (body.stdin !== undefined && typeof body.stdin !== 'string') throw badRequest('stdin must be a string')
  const process = await context.manager.run(id, request)
  res.once('close', () => {
    if (!res.writableFinished) context.manager.clientGone(id, process)
  })
  const collect = (stream: NodeJS.ReadableStream | null) =>
    new Promise<string>((resolve) => {
      if (!stream) return resolve('')
      const chunks: Buffer[] = []
      let size = 0
      stream.on('data', (chunk: Buffer) => {
        size += chunk.length
        if (size <= RUN_OUTPUT_LIMIT) chunks.push(chunk)
      })
      stream.on('close', () => resolve(Buffer.concat(chunks).toString('utf8')))
      stream.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')))
    })
  const outputs = Promise.all([collect(process.stdout), collect(process.stderr)])
  process.stdin.end(typeof body.stdin === 'string' ? body.stdin : undefined)
  const status = await process.exited
  const [stdout, stderr] = await outputs
  return {...status, stdout, stderr}
}

/** The audit log as JSON lines; with `follow`, new lines as they are written until the client leaves. */
async function streamAudit(context: DaemonContext, req: IncomingMessage, res: ServerResponse, id: string, follow: boolean): Promise<void> {
  const path = context.manager.auditLog(id)
  const stop = new AbortController()
  // The response's close, not the socket's: a kept-alive socket outlives many requests.
  res.once('close', () => stop.abort())
  res.writeHead(200, {'content-type': 'application/x-ndjson'})
  // A follower learns at once that it is following, not when the first event comes.
  res.flushHeaders()
  for await (const event of readAudit(path, {follow, signal: stop.signal})) {
    if (!res.write(`${JSON.stringify(event)}\n`)) await new Promise((resolve) => res.once('drain', resolve))
  }
  res.end()
}

/**
 * The sandbox's workspace changes as a patch (text/x-diff), a JSON list, or the
 * archive `workspace apply` reads; no workspace is a 409. The patch and the
 * archive are streamed as they are made: an error once they have begun cuts the
 * connection, so a client never takes a cut stream for a whole one.
 */
async function sendWorkspaceChanges(context: DaemonContext, res: ServerResponse, id: string, format: 'patch' | 'json' | 'archive'): Promise<void> {
  let changes
  try {
    changes = await context.manager.workspaceDiff(id)
  } catch (error) {
    if (isCleanroomError(error) && error.code === 'workspace_unavailable') return sendJson(res, 409, errorJson(error))
    throw error
  }
  try {
    if (format === 'json') {
      sendJson(res, 200, {sandbox_id: id, workspace_source: changes.workspaceSource, ...changes.summary()})
      return
    }
    res.writeHead(200, {'content-type': format === 'patch' ? 'text/x-diff; charset=utf-8' : 'application/x-tar'})
    await pipeline(format === 'patch' ? changes.patch() : changes.archive(), res)
  } finally {
    await changes.close()
  }
}

async function describeBackends(context: DaemonContext): Promise<Record<string, unknown>[]> {
  return Promise.all(
    [...context.backends.values()].map(async (backend) => ({
      name: backend.name,
      default: backend.name === context.defaultBackend,
      ...(await backend.availability()),
      capabilities: backend.capabilities(),
    })),
  )
}

function systemContext(context: DaemonContext): SystemContext {
  return {manager: context.manager, stateDir: context.stateDir, log: context.log, kinds: [...CACHE_KINDS, context.agentPackages.cacheKind]}
}

/** A record as the API shows it: the backend's private runtime state left out. */
export function publicRecord(record: SandboxRecord): Omit<SandboxRecord, 'runtime'> {
  const {runtime: _runtime, ...visible} = record
  return visible
}
