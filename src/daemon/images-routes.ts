import type {IncomingMessage, ServerResponse} from 'node:http'

import {errorJson} from '../errors/render.js'
import {CleanroomError, isCleanroomError, messageOf} from '../errors/index.js'
import type {RegistryAccess} from '../images/auth.js'
import type {ImageEvent} from '../images/build.js'
import type {Platform} from '../images/manifest.js'
import {parseImageReference} from '../images/reference.js'
import type {ImageService} from '../images/service.js'
import {badRequest, readJson, sendJson} from './http.js'

type ImageRoute = [string, RegExp, (req: IncomingMessage, res: ServerResponse, params: string[], url: URL) => Promise<void>]

/** The image routes of the daemon API (docs/api.md#images). */
export function imageRoutes(images: ImageService): ImageRoute[] {
  return [
    ['POST', /^\/v1\/images\/pull$/, async (req, res) => pull(images, req, res)],
    ['POST', /^\/v1\/images\/import$/, async (req, res, _params, url) => {
      const reference = parseImageReference(url.searchParams.get('ref') ?? '')
      const format = url.searchParams.get('format') ?? 'rootfs'
      if (format !== 'rootfs' && format !== 'oci-layout') throw badRequest('format must be rootfs or oci-layout')
      const image = format === 'rootfs' ? await images.importRootfs(reference, req) : await images.importOciLayout(reference, req)
      sendJson(res, 201, image)
    }],
    ['POST', /^\/v1\/images\/prune$/, async (req, res) => {
      const body = await readJson(req)
      const keep = body.keep ?? []
      if (!Array.isArray(keep) || !keep.every((item) => typeof item === 'string')) throw badRequest('keep must be an array of image references or digests')
      if (body.dry_run !== undefined && typeof body.dry_run !== 'boolean') throw badRequest('dry_run must be true or false')
      sendJson(res, 200, await images.prune(keep as string[], body.dry_run === true))
    }],
    ['GET', /^\/v1\/images$/, async (_req, res) => sendJson(res, 200, await images.list())],
    ['GET', /^\/v1\/images\/([^/]+)$/, async (_req, res, [selector]) => sendJson(res, 200, await images.get(selector!))],
    ['DELETE', /^\/v1\/images\/([^/]+)$/, async (_req, res, [selector]) => sendJson(res, 200, await images.remove(selector!))],
  ]
}

/**
 * POST /v1/images/pull: checks the request, then answers 200 and streams the
 * pull's progress as JSON lines, ending with a `result` or an `error` line.
 * A client that goes away stops waiting; the pull stops when nobody waits.
 */
async function pull(images: ImageService, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req)
  if (typeof body.ref !== 'string') throw badRequest('ref must be an image reference')
  const reference = parseImageReference(body.ref)
  const access = parseAccess(body)
  const platform = body.platform === undefined ? undefined : parsePlatform(body.platform)

  const left = new AbortController()
  res.once('close', () => {
    if (!res.writableFinished) left.abort(new CleanroomError('image_invalid', 'the client went away'))
  })
  res.writeHead(200, {'content-type': 'application/x-ndjson'})
  const write = (line: ImageEvent | Record<string, unknown>) => {
    if (!res.destroyed) res.write(`${JSON.stringify(line)}\n`)
  }
  try {
    const result = await images.pull(reference, {access, ...(platform && {platform}), onEvent: write, signal: left.signal})
    write({type: 'result', ...result})
  } catch (error) {
    const known = isCleanroomError(error) ? error : new CleanroomError('image_invalid', `the pull failed: ${messageOf(error)}`)
    write({type: 'error', ...errorJson(known)})
  }
  res.end()
}

/** Transport and credentials for the registry, as the CLI read them from the runtime config and its environment. */
function parseAccess(body: Record<string, unknown>): RegistryAccess {
  const access: RegistryAccess = {}
  if (body.insecure !== undefined) {
    if (typeof body.insecure !== 'boolean') throw badRequest('insecure must be true or false')
    access.insecure = body.insecure
  }
  if (body.auth !== undefined) {
    if (typeof body.auth !== 'object' || body.auth === null) throw badRequest('auth must be {username, password} or {token}')
    const {username, password, token} = body.auth as Record<string, unknown>
    for (const [name, value] of Object.entries({username, password, token})) {
      if (value !== undefined && (typeof value !== 'string' || /[\0\r\n]/.test(value))) throw badRequest(`auth.${name} must be a string on one line`)
    }
    if ((username === undefined) !== (password === undefined)) throw badRequest('auth needs both username and password')
    if (typeof username === 'string') access.username = username
    if (typeof password === 'string') access.password = password
    if (typeof token === 'string') access.token = token
  }
  return access
}

function parsePlatform(value: unknown): Platform {
  const parts = typeof value === 'string' ? value.split('/') : []
  if (parts.length < 2 || parts.length > 3 || !parts.every((part) => /^[a-z0-9]+$/.test(part))) throw badRequest('platform must be os/architecture[/variant], e.g. linux/arm64')
  return {os: parts[0]!, architecture: parts[1]!, ...(parts[2] && {variant: parts[2]})}
}
