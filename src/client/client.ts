import type {IncomingMessage} from 'node:http'
import type {Socket} from 'node:net'
import {PassThrough, type Readable} from 'node:stream'

import type {GrantRequest, GrantSummary} from '../credentials/wire.js'
import type {EgressState} from '../daemon/egress-supervisor.js'
import {CLIENT_VERSION_HEADER, EXEC_UPGRADE, encodeJsonFrame, FrameType} from '../daemon/protocol.js'
import type {AgentPackageAnswer} from '../daemon/agent-packages.js'
import type {DiskUsageReport, PruneReport} from '../daemon/system/index.js'
import type {AuditEvent} from '../egress/audit.js'
import {CleanroomError, type ErrorCode, messageOf} from '../errors/index.js'
import type {AllowRuleInput, CompiledPolicy} from '../policy/schema.js'
import type {ExecRequest, ExitStatus, SandboxRecord} from '../sandbox/types.js'
import type {WorkspaceSummary} from '../workspace/changes.js'
import {type Exchange, exchange, jsonRequest} from './http1.js'
import {requireTrustedSocket} from './socket-trust.js'

export type PublicSandbox = Omit<SandboxRecord, 'runtime'> & {egress?: {allowed: number; denied: number} & EgressState}

/** GET /v1/sandboxes/{id}/workspace/changes. */
export type WorkspaceChanges = WorkspaceSummary & {sandbox_id: string; workspace_source: string}

export interface BackendInfo {
  name: string
  default: boolean
  ok: boolean
  version?: string
  problem?: string
  fix?: string
  capabilities: Record<string, boolean>
}

/** POST /v1/agent-packages (docs/api.md). */
export interface AgentPackageBody {
  package: string
  wanted: string
  network: readonly AllowRuleInput[]
  npm_config: Record<string, string>
  update: boolean
  backend?: string
}

/** POST /v1/sandboxes (docs/api.md). */
export type CreateSandboxBody = {backend?: string; allow_all?: boolean; ephemeral?: boolean; extra_allow?: readonly AllowRuleInput[]; agent_package?: string; image?: string} & (
  | {repository: string}
  | {policy: CompiledPolicy; workspace_source: string | null}
)

interface RawResponse {
  status: number
  body: Buffer
}

/** Talks to the daemon's HTTP API over its unix socket (docs/api.md). */
export class DaemonClient {
  private started: Promise<void> | undefined

  /**
   * `start`: starts a daemon on `socketPath`; called once, when a request finds none there.
   * `version`: this CLI's version, sent with every request; a daemon of another version refuses them.
   * `timeoutMs`: how long a JSON request may wait for its answer (default: as long as it takes).
   */
  constructor(
    readonly socketPath: string,
    private readonly options: {start?: () => Promise<void>; version?: string; timeoutMs?: number} = {},
  ) {}

  private get headers(): Record<string, string> {
    return this.options.version === undefined ? {} : {[CLIENT_VERSION_HEADER]: this.options.version}
  }

  ping(): Promise<{version: string; api: string; pid: number}> {
    return this.json('GET', '/v1/ping')
  }

  /** What cleanroom keeps on disk (GET /v1/system/df). */
  diskUsage(): Promise<DiskUsageReport> {
    return this.json('GET', '/v1/system/df')
  }

  /** Removes unused sandboxes, caches and logs (POST /v1/system/prune). */
  prune(body: {all: boolean; dry_run: boolean; older_than_seconds: number}): Promise<PruneReport> {
    return this.json('POST', '/v1/system/prune', body)
  }

  backends(): Promise<BackendInfo[]> {
    return this.json('GET', '/v1/backends')
  }

  /** A new sandbox, from a compiled policy and a workspace, or from a repository whose policy the daemon loads. */
  createSandbox(body: CreateSandboxBody): Promise<PublicSandbox> {
    return this.json('POST', '/v1/sandboxes', body)
  }

  /** Makes sure the shared agent cache holds a package (fetching it in a sandbox of its own when needed): POST /v1/agent-packages. */
  resolveAgentPackage(body: AgentPackageBody): Promise<AgentPackageAnswer> {
    return this.json('POST', '/v1/agent-packages', body)
  }

  listSandboxes(all: boolean): Promise<PublicSandbox[]> {
    return this.json('GET', `/v1/sandboxes${all ? '?all=true' : ''}`)
  }

  /** The sandbox's egress audit events as they are written (JSON lines); `follow` keeps the stream open until `signal` aborts. */
  async *egressEvents(id: string, follow: boolean, signal?: AbortSignal): AsyncGenerator<AuditEvent> {
    const response = await this.send('GET', `/v1/sandboxes/${encodeURIComponent(id)}/egress${follow ? '?follow=true' : ''}`, undefined, signal)
    if (response.statusCode !== 200) check({status: response.statusCode ?? 0, body: await collect(response)})
    let partial = ''
    for await (const chunk of response) {
      const lines = (partial + (chunk as Buffer).toString('utf8')).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) if (line.trim() !== '') yield JSON.parse(line) as AuditEvent
    }
  }

  inspectSandbox(id: string): Promise<PublicSandbox> {
    return this.json('GET', `/v1/sandboxes/${encodeURIComponent(id)}`)
  }

  removeSandbox(id: string): Promise<PublicSandbox> {
    return this.json('DELETE', `/v1/sandboxes/${encodeURIComponent(id)}`)
  }

  run(id: string, request: Omit<ExecRequest, 'tty'> & {stdin?: string}): Promise<ExitStatus & {stdout: string; stderr: string}> {
    return this.json('POST', `/v1/sandboxes/${encodeURIComponent(id)}/run`, request)
  }

  /** Grants the sandbox credentials through its gateway (docs/api.md#credentials). */
  grantCredentials(id: string, grant: GrantRequest): Promise<GrantSummary> {
    return this.json('POST', `/v1/sandboxes/${encodeURIComponent(id)}/credentials`, grant)
  }

  /** Sends a tar stream to be unpacked at `path` inside the sandbox. */
  async putArchive(id: string, path: string, archive: Readable): Promise<void> {
    const response = await this.send('PUT', `/v1/sandboxes/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(path)}`, archive)
    await collect(response).then((body) => check({status: response.statusCode ?? 0, body}))
  }

  /** A tar stream of `path` inside the sandbox. */
  getArchive(id: string, path: string): Promise<Readable> {
    return this.stream(`/v1/sandboxes/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(path)}`)
  }

  /**
   * A GET whose answer is streamed. The daemon sends an error it meets after the
   * answer began by cutting the stream short: the stream then fails (it never
   * just ends early), so a cut patch or archive is never taken for a whole one.
   */
  private async stream(path: string): Promise<Readable> {
    const response = await this.send('GET', path)
    if (response.statusCode !== 200) check({status: response.statusCode ?? 0, body: await collect(response)})
    const body = new PassThrough()
    response.on('error', (error) => {
      body.destroy(new CleanroomError('backend_failed', `the daemon broke off its answer to GET ${path.split('?')[0]} (${messageOf(error)}); nothing it sent is complete`, {
        suggestions: ['See why in the daemon log: cleanroom doctor shows where it is'],
      }))
    })
    body.on('close', () => response.destroy())
    return response.pipe(body)
  }

  /** What the sandbox changed under /workspace, as a git-style patch streamed as the daemon produces it. */
  workspacePatch(id: string): Promise<Readable> {
    return this.stream(`/v1/sandboxes/${encodeURIComponent(id)}/workspace/diff`)
  }

  /** What the sandbox changed under /workspace, path by path. */
  workspaceChanges(id: string): Promise<WorkspaceChanges> {
    return this.json('GET', `/v1/sandboxes/${encodeURIComponent(id)}/workspace/changes`)
  }

  /** The list of changes and the sandbox's version of each path, as a tar (what `workspace apply` writes from). */
  workspaceArchive(id: string): Promise<Readable> {
    return this.stream(`/v1/sandboxes/${encodeURIComponent(id)}/workspace/archive`)
  }

  /**
   * Starts a command and attaches to its stream in one round trip: the upgrade
   * request and the start frame go out together (GET /v1/sandboxes/{id}/exec).
   * Resolves to the socket, which then carries frames; an HTTP error becomes the
   * CleanroomError the daemon sent, and then nothing was started.
   */
  async startExec(id: string, request: ExecRequest): Promise<Socket> {
    const head = jsonRequest('GET', `/v1/sandboxes/${encodeURIComponent(id)}/exec`, undefined, {...this.headers, Connection: 'Upgrade', Upgrade: EXEC_UPGRADE})
    const answer = await this.exchange([head, encodeJsonFrame(FrameType.start, request)])
    if (answer.upgraded) return answer.socket
    check(answer)
    throw new CleanroomError('backend_failed', `the daemon answered ${answer.status} instead of starting the command`)
  }

  /** One JSON request and its JSON answer; an error answer becomes the CleanroomError the daemon sent. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const answer = await this.exchange([jsonRequest(method, path, body === undefined ? undefined : JSON.stringify(body), this.headers)])
    if (answer.upgraded) throw new CleanroomError('backend_failed', `the daemon switched protocols on ${method} ${path}`)
    check(answer)
    return JSON.parse(answer.body.toString('utf8')) as T
  }

  /**
   * One request and its answer. A refused connection means no daemon listens and
   * nothing was sent: the daemon is started (when this client may) and the request sent again.
   */
  private async exchange(request: (Buffer | string)[]): Promise<Exchange> {
    const socketPath = this.trustedSocketPath()
    try {
      return await exchange(socketPath, request, this.options.timeoutMs)
    } catch (error) {
      if (this.options.start === undefined || !noDaemon(error)) throw unreachable(this.socketPath, error)
    }
    await this.startOnce()
    return exchange(this.trustedSocketPath(), request).catch((error: unknown) => {
      throw unreachable(this.socketPath, error)
    })
  }

  /** The socket, once it is known that only this user or root can have put it there; checked before every connection. */
  private trustedSocketPath(): string {
    requireTrustedSocket(this.socketPath)
    return this.socketPath
  }

  private startOnce(): Promise<void> {
    this.started ??= this.options.start?.() ?? Promise.resolve()
    return this.started
  }

  /** A request whose body or answer is a stream (archives, the audit log, image pulls), through Node's http client. */
  async send(method: string, path: string, body?: Readable, signal?: AbortSignal): Promise<IncomingMessage> {
    // Loaded on first use: `exec` never needs it.
    const {request: httpRequest} = await import('node:http')
    // A streamed body cannot be sent twice: the daemon is made sure of first.
    if (this.options.start !== undefined) await this.startOnce()
    const socketPath = this.trustedSocketPath()
    return new Promise((resolve, reject) => {
      const req = httpRequest({socketPath, path, method, headers: this.headers, ...(signal ? {signal} : {})}, resolve)
      req.on('error', (error) => reject(unreachable(this.socketPath, error)))
      if (body === undefined) req.end()
      else body.pipe(req)
    })
  }
}

/** Turns an error response into the CleanroomError the daemon threw. */
export function check(response: RawResponse): void {
  if (response.status >= 200 && response.status < 300) return
  let error: {code?: string; message?: string; suggestions?: string[]; details?: unknown} = {}
  try {
    error = (JSON.parse(response.body.toString('utf8')) as {error?: typeof error}).error ?? {}
  } catch {
    // not JSON: fall through with the raw text
  }
  throw new CleanroomError((error.code ?? 'backend_failed') as ErrorCode, error.message ?? `daemon answered ${response.status}: ${response.body.toString('utf8').slice(0, 200)}`, {
    suggestions: error.suggestions,
    details: error.details,
  })
}

export function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => resolve(Buffer.concat(chunks)))
    stream.on('error', reject)
  })
}

/** A connection nobody accepted: no socket file, or nobody listening on it. */
function noDaemon(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code
  return code === 'ENOENT' || code === 'ECONNREFUSED'
}

function unreachable(socketPath: string, error: unknown): CleanroomError {
  return new CleanroomError('daemon_unavailable', `cannot reach the cleanroom daemon at ${socketPath}: ${messageOf(error)}`, {
    cause: error,
    suggestions: ['Start it with: cleanroom serve', 'Or check its log: cleanroom doctor'],
  })
}
