import type {IncomingMessage, ServerResponse} from 'node:http'

import {CleanroomError, isCleanroomError, messageOf, type ErrorCode} from '../errors/index.js'
import {errorJson} from '../errors/render.js'

const MAX_JSON_BODY = 1 << 20

/** HTTP status for each error code the API returns; anything else is a 500. */
const STATUS: Partial<Record<ErrorCode, number>> = {
  bad_request: 400,
  usage: 400,
  policy_invalid: 400,
  sandbox_not_found: 404,
  exec_not_found: 404,
  image_not_found: 404,
  image_not_pulled: 409,
  image_ref_invalid: 400,
  image_in_use: 409,
  sandbox_not_ready: 409,
  sandbox_failed: 409,
  daemon_version_mismatch: 409,
  backend_capability_mismatch: 422,
  workspace_changed: 409,
  workspace_unsupported_entry: 422,
  resources_over_maximum: 422,
  image_invalid: 422,
  image_unsupported: 422,
  sandbox_tool_missing: 422,
  path_escapes_root: 422,
  registry_auth_failed: 502,
  registry_failed: 502,
  backend_unavailable: 503,
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = `${JSON.stringify(body)}\n`
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(text)})
  res.end(text)
}

export function sendError(res: ServerResponse, error: unknown): void {
  const known = isCleanroomError(error) ? error : new CleanroomError('backend_failed', `internal error: ${messageOf(error)}`)
  if (res.headersSent) {
    res.destroy(known)
    return
  }
  sendJson(res, statusOf(known), errorJson(known))
}

export function statusOf(error: CleanroomError): number {
  return STATUS[error.code] ?? 500
}

/** Objects and arrays inside one another in a request: far more than any request needs. */
const MAX_JSON_DEPTH = 64

/** A JSON object from bytes a client sent; anything else is bad_request. */
export function parseJsonObject(bytes: Buffer): Record<string, unknown> {
  // Deep nesting is slow to parse and breaks anything that walks the value recursively (structuredClone, JSON.stringify).
  if (nestsDeeperThan(bytes, MAX_JSON_DEPTH)) throw badRequest(`request nests objects and arrays more than ${MAX_JSON_DEPTH} deep`)
  let value: unknown
  try {
    value = JSON.parse(bytes.toString('utf8'))
  } catch (error) {
    throw badRequest(`request is not JSON: ${messageOf(error)}`)
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw badRequest('request must be a JSON object')
  return value as Record<string, unknown>
}

/** Whether JSON text nests objects and arrays more than `max` deep (brackets inside strings do not count). */
function nestsDeeperThan(bytes: Uint8Array, max: number): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < bytes.length; i++) {
    const byte = bytes[i]
    if (inString) {
      if (byte === 0x5c) i++
      else if (byte === 0x22) inString = false
    } else if (byte === 0x22) {
      inString = true
    } else if (byte === 0x5b || byte === 0x7b) {
      if (++depth > max) return true
    } else if (byte === 0x5d || byte === 0x7d) {
      depth--
    }
  }
  return false
}

export function badRequest(message: string): CleanroomError {
  return new CleanroomError('bad_request', message)
}

/** The request body as JSON; an empty body is `{}`. Refuses bodies over 1 MiB and invalid JSON with bad_request. */
export async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_JSON_BODY) throw badRequest(`request body over ${MAX_JSON_BODY} bytes`)
    chunks.push(chunk as Buffer)
  }
  const body = Buffer.concat(chunks)
  return body.toString('utf8').trim() === '' ? {} : parseJsonObject(body)
}
