import {request as httpRequest, type IncomingMessage} from 'node:http'
import type {Socket} from 'node:net'
import type {Readable} from 'node:stream'

import type {AuditEvent} from '../egress/audit.js'
import {CleanroomError, type ErrorCode, messageOf} from '../errors/index.js'
import type {CompiledPolicy} from '../policy/schema.js'
import type {ExecRequest, ExitStatus, SandboxRecord} from '../sandbox/types.js'
import type {WorkspaceDiff} from '../workspace/diff.js'

export type PublicSandbox = Omit<SandboxRecord, 'runtime'> & {egress?: {allowed: number; denied: number}}

/** GET /v1/sandboxes/{id}/workspace/changes: the patch only with `?patch=true`. */
export type WorkspaceChanges = Omit<WorkspaceDiff, 'patch'> & {sandbox_id: string; workspace_source: string; patch?: string}

export interface BackendInfo {
  name: string
  default: boolean
  ok: boolean
  version?: string
  problem?: string
  fix?: string
  capabilities: Record<string, boolean>
}

interface RawResponse {
  status: number
  body: Buffer
}

/** Talks to the daemon's HTTP API over its unix socket (docs/api.md). */
export class DaemonClient {
  constructor(readonly socketPath: string) {}

  ping(): Promise<{version: string; api: string; pid: number}> {
    return this.json('GET', '/v1/ping')
  }

  backends(): Promise<BackendInfo[]> {
    return this.json('GET', '/v1/backends')
  }

  createSandbox(body: {backend?: string; policy: CompiledPolicy; workspace_source: string | null; allow_all?: boolean}): Promise<PublicSandbox> {
    return this.json('POST', '/v1/sandboxes', body)
  }

  listSandboxes(all: boolean): Promise<PublicSandbox[]> {
    return this.json('GET', `/v1/sandboxes${all ? '?all=true' : ''}`)
  }

  /** The sandbox's egress audit events as they are written (JSON lines); `follow` keeps the stream open. */
  async *egressEvents(id: string, follow: boolean): AsyncGenerator<AuditEvent> {
    const response = await this.send('GET', `/v1/sandboxes/${encodeURIComponent(id)}/egress${follow ? '?follow=true' : ''}`)
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

  createExec(id: string, request: ExecRequest): Promise<{exec_id: string; sandbox_id: string}> {
    return this.json('POST', `/v1/sandboxes/${encodeURIComponent(id)}/execs`, request)
  }

  run(id: string, request: Omit<ExecRequest, 'tty'> & {stdin?: string}): Promise<ExitStatus & {stdout: string; stderr: string}> {
    return this.json('POST', `/v1/sandboxes/${encodeURIComponent(id)}/run`, request)
  }

  /** Sends a tar stream to be unpacked at `path` inside the sandbox. */
  async putArchive(id: string, path: string, archive: Readable): Promise<void> {
    const response = await this.send('PUT', `/v1/sandboxes/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(path)}`, archive)
    await collect(response).then((body) => check({status: response.statusCode ?? 0, body}))
  }

  /** A tar stream of `path` inside the sandbox. */
  async getArchive(id: string, path: string): Promise<Readable> {
    const response = await this.send('GET', `/v1/sandboxes/${encodeURIComponent(id)}/archive?path=${encodeURIComponent(path)}`)
    if (response.statusCode !== 200) check({status: response.statusCode ?? 0, body: await collect(response)})
    return response
  }

  /** What the sandbox changed under /workspace, as a git-style patch. */
  async workspacePatch(id: string): Promise<string> {
    const response = await this.send('GET', `/v1/sandboxes/${encodeURIComponent(id)}/workspace/diff`)
    const raw = {status: response.statusCode ?? 0, body: await collect(response)}
    check(raw)
    return raw.body.toString('utf8')
  }

  /** What the sandbox changed under /workspace, path by path; with `withPatch`, the patch too (one consistent reading). */
  workspaceChanges(id: string, withPatch = false): Promise<WorkspaceChanges> {
    return this.json('GET', `/v1/sandboxes/${encodeURIComponent(id)}/workspace/changes${withPatch ? '?patch=true' : ''}`)
  }

  /** Upgrades to the exec stream of a created execution; the returned socket carries frames. */
  attach(execId: string): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({
        socketPath: this.socketPath,
        path: `/v1/execs/${encodeURIComponent(execId)}/attach`,
        method: 'GET',
        headers: {connection: 'Upgrade', upgrade: 'cleanroom-exec'},
      })
      req.on('upgrade', (_res, socket, head) => {
        if (head.length > 0) socket.unshift(head)
        resolve(socket)
      })
      req.on('response', (res) => {
        collect(res).then((body) => {
          try {
            check({status: res.statusCode ?? 0, body})
            reject(new CleanroomError('backend_failed', `the daemon did not start execution ${execId}`))
          } catch (error) {
            reject(error)
          }
        }, reject)
      })
      req.on('error', (error) => reject(unreachable(this.socketPath, error)))
      req.end()
    })
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const response = await this.send(method, path, body === undefined ? undefined : JSON.stringify(body))
    const raw = {status: response.statusCode ?? 0, body: await collect(response)}
    check(raw)
    return JSON.parse(raw.body.toString('utf8')) as T
  }

  private send(method: string, path: string, body?: Readable | string): Promise<IncomingMessage> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = {}
      if (typeof body === 'string') {
        headers['content-type'] = 'application/json'
        headers['content-length'] = String(Buffer.byteLength(body))
      }
      const req = httpRequest({socketPath: this.socketPath, path, method, headers}, resolve)
      req.on('error', (error) => reject(unreachable(this.socketPath, error)))
      if (body === undefined || typeof body === 'string') req.end(body)
      else body.pipe(req)
    })
  }
}

/** Turns an error response into the CleanroomError the daemon threw. */
function check(response: RawResponse): void {
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

function collect(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    stream.on('data', (chunk: Buffer) => chunks.push(chunk))
    stream.on('end', () => resolve(Buffer.concat(chunks)))
    stream.on('error', reject)
  })
}

function unreachable(socketPath: string, error: unknown): CleanroomError {
  return new CleanroomError('daemon_unavailable', `cannot reach the cleanroom daemon at ${socketPath}: ${messageOf(error)}`, {
    cause: error,
    suggestions: ['Start it with: cleanroom serve', 'Or check its log: cleanroom doctor'],
  })
}
