import {randomBytes} from 'node:crypto'
import {createServer, type Server} from 'node:https'
import type {AddressInfo} from 'node:net'

export type TokenEndpointMode = 'normal' | 'expired' | 'malformed' | 'down'

/**
 * An OAuth provider on loopback (TLS) that enforces single-use refresh tokens
 * the way Codex's does: each refresh returns a new access token and a new
 * refresh token, and a refresh token used a second time is answered 401
 * `refresh_token_reused`. Its API host answers 200 for an access token it
 * issued (until it expires, as real providers do), 401 for anything else.
 */
export class FakeOAuth {
  /** Every token it ever issued, so a test can grep for any of them. */
  readonly issued: string[] = []
  /** Every token presented to it (refresh tokens and bearer tokens), so a test can check none was a phantom. */
  readonly presented: string[] = []
  reused = 0
  refreshes = 0
  apiCalls = {ok: 0, refused: 0}
  mode: TokenEndpointMode = 'normal'
  access: string
  refresh: string
  private readonly used = new Set<string>()
  private readonly accessTokens = new Set<string>()
  private generation = 0

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {
    this.access = ''
    this.refresh = ''
    this.rotate()
  }

  static async start(tls: {key: string; cert: string}): Promise<FakeOAuth> {
    const server = createServer(tls)
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    const fake = new FakeOAuth(server, (server.address() as AddressInfo).port)
    server.on('request', (req, res) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => (body += chunk))
      req.on('end', () => {
        const answer = fake.answer(req.method ?? '', req.url ?? '', String(req.headers.authorization ?? ''), String(req.headers['content-type'] ?? ''), body)
        res.writeHead(answer.status, {'content-type': answer.type ?? 'application/json'})
        res.end(typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body))
      })
    })
    return fake
  }

  /** A JWT-shaped access token (unsigned: the fake checks it by value) that expires in `seconds`. */
  private jwt(seconds: number): string {
    const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url')
    return `${part({alg: 'RS256', typ: 'JWT'})}.${part({exp: Math.floor(Date.now() / 1000) + seconds, gen: ++this.generation, email: 'user@example.test'})}.${randomBytes(32).toString('base64url')}`
  }

  private rotate(): {access_token: string; refresh_token: string; id_token: string} {
    this.access = this.jwt(3600)
    this.accessTokens.add(this.access)
    this.refresh = `rt_${randomBytes(24).toString('hex')}`
    const id = this.jwt(3600)
    this.issued.push(this.access, this.refresh, id)
    return {access_token: this.access, refresh_token: this.refresh, id_token: id}
  }

  /** The tokens a fresh login on the host would write. */
  login(): {access_token: string; refresh_token: string; id_token: string} {
    return this.rotate()
  }

  private answer(method: string, url: string, authorization: string, contentType: string, body: string): {status: number; body: unknown; type?: string} {
    const path = url.split('?')[0]
    if (method === 'POST' && path === '/oauth/token') {
      const fields: Record<string, unknown> = contentType.includes('x-www-form-urlencoded') ? Object.fromEntries(new URLSearchParams(body)) : (JSON.parse(body || '{}') as Record<string, unknown>)
      if (fields.grant_type === 'authorization_code') return {status: 200, body: {...this.rotate(), token_type: 'Bearer', expires_in: 3600}}
      const presented = String(fields.refresh_token ?? '')
      this.presented.push(presented)
      if (this.mode === 'expired') return {status: 400, body: {error: 'invalid_grant', error_description: 'refresh token expired'}}
      if (this.mode === 'malformed') return {status: 200, type: 'text/html', body: `<html>access_token=${this.jwt(60)}</html>`}
      if (this.used.has(presented)) {
        this.reused++
        return {status: 401, body: {error: {code: 'refresh_token_reused', message: 'Your refresh token has already been used to generate a new access token.'}}}
      }
      if (presented !== this.refresh) return {status: 400, body: {error: 'invalid_grant'}}
      this.used.add(presented)
      this.refreshes++
      return {status: 200, body: {...this.rotate(), token_type: 'Bearer', expires_in: 3600, scope: 'openid'}}
    }
    if (path === '/api/whoami') {
      const token = authorization.replace(/^Bearer /, '')
      this.presented.push(token)
      if (this.accessTokens.has(token)) {
        this.apiCalls.ok++
        return {status: 200, body: {ok: true, generation: this.generation}}
      }
      this.apiCalls.refused++
      return {status: 401, body: {error: 'invalid_token'}}
    }
    // An endpoint the login does not name that hands out a token anyway.
    if (path === '/oauth/leak') return {status: 200, body: {access_token: this.jwt(60)}}
    return {status: 404, body: {error: 'not_found'}}
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}
