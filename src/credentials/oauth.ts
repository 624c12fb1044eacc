import type {IncomingMessage, ServerResponse} from 'node:http'

import type {GatewayRequest} from './audit.js'
import type {GatewayContext} from './context.js'
import {tokensFromAnswer, refreshLineage, type RefreshOutcome, type TokenAnswer} from './logins.js'
import {formatPhantom, isJwt, jwtPhantom, phantomSecret, secretIn} from './phantom.js'
import type {TokenKind} from './spec.js'
import type {LoginState, TokenSet} from './state.js'
import {exchange, sendGatewayError, upstreamHeaders, type UpstreamTarget} from './upstream.js'

const MAX_TOKEN_REQUEST_BYTES = 64 * 1024
const TOKEN_FIELDS: Record<string, TokenKind> = {access_token: 'access', refresh_token: 'refresh', id_token: 'id'}
const TOKEN_FIELD_PATTERN = /"(?:access|refresh|id)_token"|(?:access|refresh|id)_token=/

/** A token request's body: JSON or a form, the two encodings OAuth clients use. */
type TokenRequest = {kind: 'json'; fields: Record<string, unknown>} | {kind: 'form'; fields: URLSearchParams}

/**
 * A request to a login's token endpoint. A refresh with the sandbox's phantom
 * is resolved by the login's single refresher (`refreshLineage`); any other
 * grant (a device code, an authorization code: a login inside the sandbox) is
 * sent on with phantoms swapped, and the tokens it yields are kept by the
 * gateway as the sandbox's own lineage. Whatever comes back has phantoms in
 * place of tokens; an answer that cannot be read is refused rather than
 * passed through (fail closed).
 */
export async function serveTokenEndpoint(context: GatewayContext, login: LoginState, req: IncomingMessage, res: ServerResponse, target: UpstreamTarget, audit: GatewayRequest): Promise<void> {
  const where = {host: target.host, port: target.port, credential: login.spec.name}
  const body = await readBody(req)
  const request = body === undefined ? undefined : parseTokenRequest(String(req.headers['content-type'] ?? ''), body)
  if (request === undefined) {
    audit.record({...where, action: 'deny', reason: 'token_response_invalid', status: 400, error: 'unreadable token request'})
    sendGatewayError(res, 400, 'token_request_invalid', 'cleanroom credential gateway: a token request must be JSON or a form of at most 64 KiB')
    return
  }
  const headers = upstreamHeaders(req.headers, target)
  const send = async (fields: TokenRequest): Promise<TokenAnswer & {address: string | null; raw: Buffer}> => {
    const answer = await exchange(context.pool, 'POST', target, headers, encode(fields))
    return {status: answer.status, json: parseJson(answer.body), address: answer.address, raw: answer.body}
  }

  const presented = field(request, 'refresh_token')
  if (field(request, 'grant_type') === 'refresh_token' && presented !== undefined && isPhantomOf(presented, login, 'refresh')) {
    let address: string | null = null
    const outcome: RefreshOutcome = await refreshLineage(context.tokenStore(login), context.delivered(login), async (realRefresh) => {
      const answer = await send(withField(request, 'refresh_token', realRefresh))
      address = answer.address
      return answer
    })
    respondToRefresh(context, login, res, outcome, audit, {...where, address})
    return
  }

  const current = await context.tokenStore(login).read()
  const answer = await send(swapPhantoms(request, login, current ?? {}))
  const json = answer.json
  const ok = answer.status >= 200 && answer.status < 300
  if (ok && !isObject(json)) {
    audit.record({...where, address: answer.address, action: 'deny', reason: 'token_response_invalid', status: 502, error: 'the token endpoint answered something that is not a JSON object'})
    sendGatewayError(res, 502, 'token_response_invalid', `cleanroom credential gateway: ${target.host} answered a token request with something that is not JSON; nothing of it is passed on`)
    return
  }
  if (!isObject(json)) {
    if (TOKEN_FIELD_PATTERN.test(answer.raw.toString('latin1'))) {
      audit.record({...where, address: answer.address, action: 'deny', reason: 'token_response_invalid', status: 502, error: 'a token field in an unreadable answer'})
      sendGatewayError(res, 502, 'token_response_invalid', `cleanroom credential gateway: ${target.host} answered with a token in a form the gateway cannot read; nothing of it is passed on`)
      return
    }
    audit.record({...where, address: answer.address, action: 'allow', reason: 'not_swapped', status: answer.status})
    res.writeHead(answer.status, {'content-type': 'text/plain'})
    res.end(answer.raw)
    return
  }
  let reason: 'not_swapped' | 'token_captured' = 'not_swapped'
  if (ok && typeof json.access_token === 'string' && typeof json.refresh_token === 'string') {
    // A login made inside the sandbox: its lineage is the sandbox's own from now on.
    login.own = tokensFromAnswer(json)
    context.setDelivered(login, login.own)
    await context.save()
    reason = 'token_captured'
  } else if (Object.keys(TOKEN_FIELDS).some((key) => typeof json[key] === 'string')) {
    await captureExtras(context, login, json)
    reason = 'token_captured'
  }
  audit.record({...where, address: answer.address, action: 'allow', reason, status: answer.status})
  sendJson(res, answer.status, phantomised(json, login, login.own ?? {}))
}

function respondToRefresh(context: GatewayContext, login: LoginState, res: ServerResponse, outcome: RefreshOutcome, audit: GatewayRequest, where: {host: string; port: number; credential: string; address: string | null}): void {
  switch (outcome.kind) {
    case 'served':
    case 'refreshed': {
      context.setDelivered(login, outcome.tokens)
      const base = outcome.kind === 'refreshed' && isObject(outcome.answer.json) ? outcome.answer.json : synthesised(outcome.tokens)
      audit.record({...where, action: 'allow', reason: outcome.kind === 'served' ? 'token_served' : 'token_refreshed', status: 200})
      sendJson(res, 200, phantomised(base, login, outcome.tokens))
      return
    }
    case 'expired':
    case 'no-login': {
      const status = outcome.kind === 'expired' ? outcome.answer.status : 401
      const upstreamError = outcome.kind === 'expired' && isObject(outcome.answer.json) ? JSON.stringify(outcome.answer.json.error ?? outcome.answer.json).slice(0, 200) : 'no refresh token'
      const message = login.own
        ? `cleanroom: the login made in this sandbox for ${login.spec.name} has expired or was revoked (${upstreamError}): log in again inside the sandbox`
        : `cleanroom: the host login ${login.spec.name} (${login.spec.file}) has expired or was revoked (${upstreamError}): run \`${login.spec.login_command}\` on the host, then start the agent again`
      audit.record({...where, action: 'deny', reason: 'login_expired', status, error: upstreamError})
      sendJson(res, status, {error: 'invalid_grant', error_description: message})
      return
    }
    case 'failed': {
      const safe = isObject(outcome.answer.json) && !Object.keys(TOKEN_FIELDS).some((key) => key in (outcome.answer.json as object))
      audit.record({...where, action: 'deny', reason: 'token_response_invalid', status: safe ? outcome.answer.status : 502, error: `the token endpoint answered ${outcome.answer.status}`})
      if (safe) sendJson(res, outcome.answer.status, outcome.answer.json)
      else sendGatewayError(res, 502, 'token_response_invalid', `cleanroom credential gateway: ${where.host} answered the refresh with ${outcome.answer.status} and no token response; nothing was stored or passed on`)
    }
  }
}

/** A token response for tokens the gateway already holds (another holder refreshed them). */
function synthesised(tokens: TokenSet): Record<string, unknown> {
  return {
    ...(tokens.access !== undefined && {access_token: tokens.access}),
    ...(tokens.refresh !== undefined && {refresh_token: tokens.refresh}),
    ...(tokens.id !== undefined && {id_token: tokens.id}),
    token_type: 'Bearer',
    ...(tokens.expires_at !== undefined && {expires_in: Math.max(0, Math.floor((tokens.expires_at - Date.now()) / 1000))}),
  }
}

/** `body` with every token replaced by the sandbox's phantom of it. */
export function phantomised(body: Record<string, unknown>, login: LoginState, tokens: TokenSet): Record<string, unknown> {
  const out = {...body}
  for (const [key, kind] of Object.entries(TOKEN_FIELDS)) {
    const real = out[key]
    if (typeof real === 'string') out[key] = phantomOf(login, kind, tokens[kind] ?? real)
  }
  return out
}

/** The phantom of a login's token: JWT-shaped for a JWT (same claims), else in the login's format. */
export function phantomOf(login: LoginState, kind: TokenKind, real: string | undefined): string {
  const secret = login.secrets[kind]
  if (real !== undefined && isJwt(real)) return jwtPhantom(real, secret)
  return formatPhantom(secret, login.spec.tokens.find((token) => token.kind === kind)?.format)
}

export function isPhantomOf(presented: string, login: LoginState, kind: TokenKind): boolean {
  const format = login.spec.tokens.find((token) => token.kind === kind)?.format
  return secretIn(presented, format) === login.secrets[kind]
}

async function captureExtras(context: GatewayContext, login: LoginState, json: Record<string, unknown>): Promise<void> {
  login.extras ??= {}
  for (const key of Object.keys(TOKEN_FIELDS)) {
    const real = json[key]
    if (typeof real !== 'string') continue
    const secret = phantomSecret()
    login.extras[secret] = real
    json[key] = isJwt(real) ? jwtPhantom(real, secret) : secret
  }
  await context.save()
}

/** A request's fields with the login's phantoms (access, id) swapped for the real tokens. */
function swapPhantoms(request: TokenRequest, login: LoginState, current: TokenSet): TokenRequest {
  let swapped = request
  for (const [name, value] of entries(request)) {
    for (const kind of ['access', 'id', 'refresh'] as const) {
      const real = current[kind]
      if (real !== undefined && isPhantomOf(value, login, kind)) swapped = withField(swapped, name, real)
    }
  }
  return swapped
}

function field(request: TokenRequest, name: string): string | undefined {
  const value = request.kind === 'json' ? request.fields[name] : request.fields.get(name)
  return typeof value === 'string' ? value : undefined
}

function entries(request: TokenRequest): [string, string][] {
  if (request.kind === 'form') return [...request.fields.entries()]
  return Object.entries(request.fields).filter((entry): entry is [string, string] => typeof entry[1] === 'string')
}

function withField(request: TokenRequest, name: string, value: string): TokenRequest {
  if (request.kind === 'json') return {kind: 'json', fields: {...request.fields, [name]: value}}
  const fields = new URLSearchParams(request.fields)
  fields.set(name, value)
  return {kind: 'form', fields}
}

function encode(request: TokenRequest): Buffer {
  return Buffer.from(request.kind === 'json' ? JSON.stringify(request.fields) : request.fields.toString())
}

function parseTokenRequest(contentType: string, body: Buffer): TokenRequest | undefined {
  if (/application\/x-www-form-urlencoded/i.test(contentType)) return {kind: 'form', fields: new URLSearchParams(body.toString('utf8'))}
  const json = parseJson(body)
  return isObject(json) ? {kind: 'json', fields: json} : undefined
}

function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8')) as unknown
  } catch {
    return undefined
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

async function readBody(req: IncomingMessage): Promise<Buffer | undefined> {
  const chunks: Buffer[] = []
  let size = 0
  for await (const chunk of req) {
    size += (chunk as Buffer).length
    if (size > MAX_TOKEN_REQUEST_BYTES) return undefined
    chunks.push(chunk as Buffer)
  }
  return Buffer.concat(chunks)
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body)
  res.writeHead(status, {'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'cache-control': 'no-store'})
  res.end(text)
}
