import type {IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders, ServerResponse} from 'node:http'
import type {Duplex} from 'node:stream'

import {auditedPath, GatewayRequest, unloggedRefusal} from './audit.js'
import type {GatewayContext} from './context.js'
import {sameToken} from './phantom.js'
import {SecretUnavailable} from './secrets.js'
import {routeUrl} from './spec.js'
import {type RouteState, routePhantom} from './state.js'
import {forward} from './relay.js'
import {endWithGatewayError, forwardUpgrade, sendGatewayError, upstreamHeaders, type UpstreamTarget} from './upstream.js'

/** Headers an API client may carry its key in; the one holding the phantom is replaced by the route's header. */
const CREDENTIAL_HEADERS = ['authorization', 'x-api-key', 'x-goog-api-key', 'api-key']

interface RouteMatch {
  route: RouteState
  target: UpstreamTarget
  /** The request's headers that carried the phantom. */
  carriers: string[]
  /** False for a request with no credential at all (a reachability check): it goes on without one. */
  inject: boolean
}

/**
 * A request to one of the sandbox's routes (`http://127.0.0.1:3129/<route>/…`):
 * answered 401 when it carries a credential that is not the route's phantom;
 * otherwise sent to the route's upstream with the phantom removed and the
 * real secret in the route's header (a request with no credential at all goes
 * without one), and the answer streamed back.
 */
export async function serveRoute(context: GatewayContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const audit = new GatewayRequest(context.sandboxId, context.audit, req.method ?? 'GET', auditedPath(req.url))
  const prepared = await prepareRoute(context, req)
  if ('refusal' in prepared) {
    req.resume()
    audit.record(prepared.audit)
    sendGatewayError(res, prepared.status, prepared.reason, prepared.refusal)
    return
  }
  const {route, target, inject, headers} = prepared
  const result = await forward(context.pool, req, res, target, headers)
  audit.record({
    host: target.host,
    port: target.port,
    credential: route.spec.name,
    address: result.address,
    action: result.refused ? 'deny' : 'allow',
    reason: result.refused?.reason ?? (result.status === undefined ? 'upstream_failed' : inject ? 'credential_injected' : 'not_swapped'),
    ...(result.status !== undefined && {status: result.status}),
    bytesUp: result.bytesUp,
    bytesDown: result.bytesDown,
    ...(result.error !== undefined && {error: result.error}),
  })
}

/** A WebSocket request to a route: checked like any other, then spliced once the upstream switches protocols. */
export async function serveRouteUpgrade(context: GatewayContext, req: IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
  const audit = new GatewayRequest(context.sandboxId, context.audit, req.method ?? 'GET', auditedPath(req.url))
  const prepared = await prepareRoute(context, req)
  if ('refusal' in prepared) {
    audit.record(prepared.audit)
    endWithGatewayError(socket, prepared.status, prepared.reason, prepared.refusal)
    return
  }
  const {route, target, inject, headers} = prepared
  const result = await forwardUpgrade(context.pool, req, socket, head, target, headers)
  audit.record({host: target.host, port: target.port, credential: route.spec.name, address: result.address, action: result.refused ? 'deny' : 'allow', reason: result.refused?.reason ?? (inject ? 'credential_injected' : 'not_swapped'), ...(result.status !== undefined && {status: result.status}), bytesUp: result.bytesUp, bytesDown: result.bytesDown})
}

type Refused = Refusal & {audit: Parameters<GatewayRequest['record']>[0]}

/** The route, target and upstream headers of a request (the phantom swapped for the secret), or why it is refused. */
async function prepareRoute(context: GatewayContext, req: IncomingMessage): Promise<(RouteMatch & {headers: OutgoingHttpHeaders}) | Refused> {
  const match = matchRoute(context, req)
  if ('refusal' in match) return {...match, audit: {host: '', port: 0, action: 'deny', reason: match.reason, ...(match.credential && {credential: match.credential}), status: match.status}}
  const {route, target, carriers, inject} = match
  const unlogged = await context.auditRefusal()
  if (unlogged !== undefined) {
    return {...unloggedRefusal(target.host, target.port, unlogged), credential: route.spec.name, audit: {host: target.host, port: target.port, credential: route.spec.name, action: 'deny', reason: 'audit_unavailable', status: 403, error: unlogged}}
  }
  const headers = upstreamHeaders(req.headers, target)
  if (!inject) return {...match, headers}
  let secret: string
  try {
    secret = (await context.secrets.resolve(route.spec.secret)).value
  } catch (error) {
    if (!(error instanceof SecretUnavailable)) throw error
    const refusal = `cleanroom credential gateway: route ${route.spec.name} has no secret on the host (${error.message})`
    return {refusal, reason: 'credential_unavailable', status: 503, audit: {host: target.host, port: target.port, credential: route.spec.name, action: 'deny', reason: 'credential_unavailable', status: 503, error: error.message}}
  }
  for (const name of carriers) delete headers[name]
  headers[route.spec.header] = route.spec.format.replace('{}', secret)
  return {...match, headers}
}

type Refusal = {refusal: string; reason: 'audit_unavailable' | 'credential_unavailable' | 'phantom_invalid' | 'unknown_route'; status: number; credential?: string}

function matchRoute(context: GatewayContext, req: IncomingMessage): RouteMatch | Refusal {
  const url = new URL(req.url ?? '/', 'http://gateway')
  const [, name = '', ...rest] = url.pathname.split('/')
  const routes = context.state().routes
  const route = routes.find((candidate) => candidate.spec.name === name)
  if (route === undefined) {
    const known = routes.map((candidate) => routeUrl(candidate.spec.name)).join(', ') || 'none'
    return {refusal: `cleanroom credential gateway: no route "${name}" in this sandbox (its routes: ${known})`, reason: 'unknown_route', status: 404}
  }
  const phantom = routePhantom(route)
  const carriers = CREDENTIAL_HEADERS.filter((header) => carriesPhantom(req.headers, header, phantom))
  const inQuery = url.searchParams.get('key')
  const queryCarries = inQuery !== null && sameToken(inQuery, phantom)
  if (queryCarries) url.searchParams.delete('key')
  const presented = inQuery !== null || CREDENTIAL_HEADERS.some((header) => req.headers[header] !== undefined)
  if (presented && carriers.length === 0 && !queryCarries) {
    return {
      refusal: `cleanroom credential gateway: this request to route ${name} does not carry the sandbox's token for it (the gateway answers only requests made with the token in the sandbox's environment)`,
      reason: 'phantom_invalid',
      status: 401,
      credential: name,
    }
  }
  const upstream = new URL(route.spec.upstream)
  const base = upstream.pathname.replace(/\/+$/, '')
  const target: UpstreamTarget = {
    protocol: upstream.protocol === 'http:' ? 'http:' : 'https:',
    host: upstream.hostname.replace(/^\[|\]$/g, ''),
    port: upstream.port === '' ? (upstream.protocol === 'http:' ? 80 : 443) : Number(upstream.port),
    path: `${base}/${rest.join('/')}${url.search}`,
  }
  return {route, target, carriers, inject: presented}
}

function carriesPhantom(headers: IncomingHttpHeaders, name: string, phantom: string): boolean {
  const value = headers[name]
  if (typeof value !== 'string') return false
  const token = value.replace(/^(?:bearer|token)\s+/i, '').trim()
  return sameToken(token, phantom)
}
