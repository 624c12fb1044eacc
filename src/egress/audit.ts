import {type FileHandle, mkdir, open, statfs} from 'node:fs/promises'
import {dirname} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {EgressAction, EgressReason} from './decide.js'

/**
 * How the sandbox asked: an HTTP CONNECT tunnel, a forwarded absolute-form HTTP
 * request, SOCKS5, SOCKS4(a) (always refused), or a request the credential
 * gateway served (one of its routes, or a request inside an intercepted tunnel).
 */
export type EgressProtocol = 'connect' | 'gateway' | 'http' | 'socks4' | 'socks5'

/** What the credential gateway did with a request (docs/credentials.md#the-audit-log). */
export type CredentialReason =
  | 'credential_injected'
  | 'credential_unavailable'
  | 'login_expired'
  | 'not_swapped'
  | 'phantom_invalid'
  | 'token_captured'
  | 'token_refreshed'
  | 'token_response_invalid'
  | 'token_served'
  | 'unknown_route'
  | 'upstream_failed'

/** One connection attempt through a sandbox's egress proxy: one line of its audit log. */
export interface AuditEvent {
  /** When the attempt started (ISO 8601, UTC). */
  readonly time: string
  readonly sandbox_id: string
  /** The destination as the proxy understood it (normalised), or as sent when it was not valid. */
  readonly host: string
  readonly port: number
  /** The address dialled, or the one refused; null when none was looked at. */
  readonly resolved_ip: string | null
  readonly action: EgressAction
  readonly reason: CredentialReason | EgressReason
  /** The host pattern of the policy rule that decided, when one did. */
  readonly rule?: string
  /** Why an allowed connection failed or a refused address was refused (`ECONNREFUSED`, `loopback`). */
  readonly error?: string
  /** Bytes sent to the destination, including a forwarded request's rewritten head. */
  readonly bytes_up: number
  /** Bytes received from the destination. */
  readonly bytes_down: number
  readonly duration_ms: number
  readonly protocol: EgressProtocol
  /** A tunnel the credential gateway took over: its requests have lines of their own (protocol gateway). */
  readonly intercepted?: true
  /** Gateway requests: the route or login whose credential was involved. */
  readonly credential?: string
  /** Gateway requests: the method, the path without its query, and the status answered. */
  readonly method?: string
  readonly path?: string
  readonly status?: number
}

/** Where the proxy records attempts. */
export interface AuditSink {
  record(event: AuditEvent): void
  /** Why an event could not be written now (a full disk), or undefined when it could. */
  unavailable?(): Promise<string | undefined>
}

export interface AuditCounts {
  readonly allowed: number
  readonly denied: number
}

export class AuditLogError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AuditLogError'
  }
}

const FOLLOW_POLL_MS = 250
/** Less free space than this, and the next event might not fit: the log counts as unavailable. */
const MIN_FREE_BYTES = 64 * 1024
const READ_CHUNK_BYTES = 1 << 20

/**
 * A sandbox's append-only JSON-lines audit log. Lines are written in the order
 * recorded, each with one append. A write that fails (a full disk) is cut back
 * off the file, so the log never holds half a line; `failure()` says why until a
 * later write succeeds, and `onFailure` hears each change.
 */
export class AuditLog implements AuditSink {
  private writes: Promise<void> = Promise.resolve()
  private failing: string | undefined

  private constructor(
    readonly path: string,
    private readonly file: FileHandle,
    /** Bytes of whole lines in the file: where a failed write is cut back to. */
    private size: number,
    private readonly onFailure: (failure: string | undefined) => void,
  ) {}

  static async open(path: string, onFailure: (failure: string | undefined) => void = () => undefined): Promise<AuditLog> {
    await mkdir(dirname(path), {recursive: true, mode: 0o700})
    const file = await open(path, 'a', 0o600)
    return new AuditLog(path, file, (await file.stat()).size, onFailure)
  }

  record(event: AuditEvent): void {
    const line = Buffer.from(`${JSON.stringify(event)}\n`)
    this.writes = this.writes.then(() => this.append(line))
  }

  /** Why the last write failed, until one succeeds again. */
  failure(): string | undefined {
    return this.failing
  }

  /** Why an event could not be written now: the last write failed, or the file system has no room left for one. */
  async unavailable(): Promise<string | undefined> {
    if (this.failing !== undefined) return this.failing
    const stats = await statfs(dirname(this.path)).catch(() => undefined)
    const free = stats === undefined ? Number.POSITIVE_INFINITY : (process.getuid?.() === 0 ? stats.bfree : stats.bavail) * stats.bsize
    return free < MIN_FREE_BYTES ? `no space left on the device (less than ${MIN_FREE_BYTES / 1024} KiB free for ${this.path})` : undefined
  }

  /** Resolves when every recorded event has been tried; rejects while the last write failed. */
  async flush(): Promise<void> {
    await this.writes
    if (this.failing !== undefined) throw new AuditLogError(`${this.path}: ${this.failing}`)
  }

  /** Closes the file after the writes in flight; a log that cannot be written is not an error here (it was reported). */
  async close(): Promise<void> {
    await this.writes
    await this.file.close()
  }

  private async append(line: Buffer): Promise<void> {
    try {
      for (let offset = 0; offset < line.length; ) offset += (await this.file.write(line, offset)).bytesWritten
      this.size += line.length
      if (this.failing !== undefined) this.changeFailure(undefined)
    } catch (error) {
      await this.file.truncate(this.size).catch(() => undefined)
      if (this.failing === undefined) this.changeFailure(error instanceof Error ? error.message : String(error))
    }
  }

  private changeFailure(failure: string | undefined): void {
    this.failing = failure
    this.onFailure(failure)
  }
}

export interface ReadAuditOptions {
  /** Keep reading as lines are appended, until `signal` aborts. */
  readonly follow?: boolean
  readonly signal?: AbortSignal
}

/**
 * The events of an audit log, oldest first. A missing file has no events yet.
 * A line counts once its newline is written, so a line being appended is
 * never read half-written. Throws AuditLogError for a line that is not an event.
 */
export async function* readAudit(path: string, options: ReadAuditOptions = {}): AsyncGenerator<AuditEvent> {
  const decoder = new TextDecoder()
  let offset = 0
  let partial = ''
  let lineNumber = 0
  while (!options.signal?.aborted) {
    const chunk = await readFrom(path, offset)
    if (chunk.length > 0) {
      offset += chunk.length
      const lines = (partial + decoder.decode(chunk, {stream: true})).split('\n')
      partial = lines.pop() ?? ''
      for (const line of lines) {
        lineNumber++
        if (line.trim() !== '') yield parseEvent(line, path, lineNumber)
      }
      continue
    }
    if (!options.follow) return
    try {
      await sleep(FOLLOW_POLL_MS, undefined, {signal: options.signal})
    } catch (error) {
      if (options.signal?.aborted) return
      throw error
    }
  }
}

/** How many attempts the log records as allowed and as denied (for `sandbox inspect`). */
export async function auditCounts(path: string): Promise<AuditCounts> {
  let allowed = 0
  let denied = 0
  for await (const event of readAudit(path)) {
    if (event.action === 'allow') allowed++
    else denied++
  }
  return {allowed, denied}
}

async function readFrom(path: string, offset: number): Promise<Buffer> {
  let file: FileHandle
  try {
    file = await open(path, 'r')
  } catch (error) {
    if (error instanceof Error && 'code' in error && error.code === 'ENOENT') return Buffer.alloc(0)
    throw error
  }
  try {
    const buffer = Buffer.alloc(READ_CHUNK_BYTES)
    const {bytesRead} = await file.read(buffer, 0, buffer.length, offset)
    return buffer.subarray(0, bytesRead)
  } finally {
    await file.close()
  }
}

function parseEvent(line: string, path: string, lineNumber: number): AuditEvent {
  let value: unknown
  try {
    value = JSON.parse(line)
  } catch {
    throw new AuditLogError(`${path}:${lineNumber}: not a JSON line`)
  }
  if (!isAuditEvent(value)) throw new AuditLogError(`${path}:${lineNumber}: not an egress audit event`)
  return value
}

function isAuditEvent(value: unknown): value is AuditEvent {
  if (typeof value !== 'object' || value === null) return false
  const event = value as Record<string, unknown>
  const strings = ['time', 'sandbox_id', 'host', 'reason', 'protocol'].every((key) => typeof event[key] === 'string')
  const numbers = ['port', 'bytes_up', 'bytes_down', 'duration_ms'].every((key) => typeof event[key] === 'number')
  const address = event.resolved_ip === null || typeof event.resolved_ip === 'string'
  return strings && numbers && address && (event.action === 'allow' || event.action === 'deny')
}
