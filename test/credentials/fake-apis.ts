import {generateKeyPairSync, randomBytes} from 'node:crypto'
import {createServer as createHttpServer, type IncomingHttpHeaders, type IncomingMessage, type Server, type ServerResponse} from 'node:http'
import {createServer as createHttpsServer} from 'node:https'
import type {AddressInfo} from 'node:net'

import {issueCertificate, keyIdentifier} from '../../src/credentials/x509.js'

/** The text every fake model answers with: what a test expects the agent to print. */
export const FAKE_COMPLETION = 'The fake model says: cleanroom-gateway-completion-7f3a'

export interface SeenRequest {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

/**
 * A model API on loopback that answers every agent's wire format with one fixed
 * completion, streamed as the real APIs stream it: Anthropic Messages SSE,
 * OpenAI Responses SSE, Gemini streamGenerateContent SSE. It records every
 * request, so a test can check which key arrived. `down` makes it refuse
 * connections (closed), `hold` keeps answers open (a hung upstream).
 */
export class FakeModelApi {
  readonly requests: SeenRequest[] = []
  /** Its OAuth token endpoint (`POST /v1/oauth/token`): the live refresh token, rotated at each refresh, and the tokens it issued. */
  readonly oauth = {refresh: '', access: '', reused: 0, issued: [] as string[]}

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(tls?: {key: string; cert: string}, at: {host: string; port: number} = {host: '127.0.0.1', port: 0}): Promise<FakeModelApi> {
    const server = tls ? createHttpsServer(tls) : createHttpServer()
    await new Promise<void>((resolve) => server.listen(at.port, at.host, resolve))
    const api = new FakeModelApi(server, (server.address() as AddressInfo).port)
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      let body = ''
      req.setEncoding('utf8')
      req.on('data', (chunk: string) => (body += chunk))
      req.on('end', () => {
        api.requests.push({method: req.method ?? '', url: req.url ?? '', headers: req.headers, body})
        if (req.method === 'POST' && (req.url ?? '').startsWith('/v1/oauth/token')) api.token(res, body)
        else answer(req, res, body)
      })
    })
    // Codex tries a WebSocket first; a plain 404 makes it fall back to HTTP at once.
    server.on('upgrade', (_req: IncomingMessage, socket) => socket.end('HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n'))
    return api
  }

  /** Starts a login: the tokens a host's auth file holds after it, with the prefixes the provider's tokens have. */
  login(prefixes = {access: '', refresh: ''}): {access: string; refresh: string} {
    this.prefixes = prefixes
    return this.issue()
  }

  private prefixes = {access: '', refresh: ''}

  private issue(): {access: string; refresh: string} {
    this.oauth.access = `${this.prefixes.access}${randomBytes(24).toString('base64url')}`
    this.oauth.refresh = `${this.prefixes.refresh}${randomBytes(24).toString('base64url')}`
    this.oauth.issued.push(this.oauth.access, this.oauth.refresh)
    return {access: this.oauth.access, refresh: this.oauth.refresh}
  }

  /** A refresh, single use: the live refresh token gets new tokens; any other is refused (a reused one counted). */
  private token(res: ServerResponse, body: string): void {
    let fields: Record<string, unknown> = {}
    try {
      fields = JSON.parse(body) as Record<string, unknown>
    } catch {
      fields = Object.fromEntries(new URLSearchParams(body))
    }
    if (fields.grant_type !== 'refresh_token' || fields.refresh_token !== this.oauth.refresh) {
      if (this.oauth.issued.includes(String(fields.refresh_token))) this.oauth.reused++
      res.writeHead(400, {'content-type': 'application/json'})
      res.end(JSON.stringify({error: 'invalid_grant'}))
      return
    }
    const tokens = this.issue()
    res.writeHead(200, {'content-type': 'application/json'})
    res.end(JSON.stringify({access_token: tokens.access, refresh_token: tokens.refresh, expires_in: 3600, token_type: 'Bearer', scope: 'user:inference user:profile'}))
  }

  /** Every value any request carried in any header, joined: what a key check greps. */
  headerText(): string {
    return this.requests.map((request) => JSON.stringify(request.headers)).join('\n')
  }

  async close(): Promise<void> {
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

function sse(res: ServerResponse, events: [string | undefined, unknown][]): void {
  res.writeHead(200, {'content-type': 'text/event-stream', 'cache-control': 'no-cache'})
  for (const [event, data] of events) res.write(`${event === undefined ? '' : `event: ${event}\n`}data: ${JSON.stringify(data)}\n\n`)
  res.end()
}

function answer(req: IncomingMessage, res: ServerResponse, body: string): void {
  const path = (req.url ?? '/').split('?')[0]!
  if (req.method === 'HEAD' || req.method === 'GET') {
    res.writeHead(200, {'content-type': 'application/json'})
    res.end(req.method === 'GET' ? '{"data":[]}' : undefined)
    return
  }
  let json: Record<string, unknown> = {}
  try {
    json = JSON.parse(body) as Record<string, unknown>
  } catch {
    // not JSON: answered as a generic request below
  }
  if (path.endsWith('/messages')) {
    const message = {id: 'msg_fake', type: 'message', role: 'assistant', model: json.model ?? 'fake', content: [], stop_reason: null, stop_sequence: null, usage: {input_tokens: 5, output_tokens: 1}}
    if (json.stream !== true) {
      res.writeHead(200, {'content-type': 'application/json'})
      res.end(JSON.stringify({...message, content: [{type: 'text', text: FAKE_COMPLETION}], stop_reason: 'end_turn'}))
      return
    }
    sse(res, [
      ['message_start', {type: 'message_start', message}],
      ['content_block_start', {type: 'content_block_start', index: 0, content_block: {type: 'text', text: ''}}],
      ['content_block_delta', {type: 'content_block_delta', index: 0, delta: {type: 'text_delta', text: FAKE_COMPLETION}}],
      ['content_block_stop', {type: 'content_block_stop', index: 0}],
      ['message_delta', {type: 'message_delta', delta: {stop_reason: 'end_turn', stop_sequence: null}, usage: {output_tokens: 8}}],
      ['message_stop', {type: 'message_stop'}],
    ])
    return
  }
  if (path.endsWith('/responses')) {
    const item = {type: 'message', id: 'msg_fake', status: 'completed', role: 'assistant', content: [{type: 'output_text', text: FAKE_COMPLETION, annotations: []}]}
    const response = {id: 'resp_fake', object: 'response', created_at: Math.floor(Date.now() / 1000), status: 'in_progress', model: json.model ?? 'fake', output: [], usage: null}
    const usage = {input_tokens: 5, input_tokens_details: {cached_tokens: 0}, output_tokens: 8, output_tokens_details: {reasoning_tokens: 0}, total_tokens: 13}
    sse(res, [
      ['response.created', {type: 'response.created', sequence_number: 0, response}],
      ['response.output_item.added', {type: 'response.output_item.added', sequence_number: 1, output_index: 0, item: {...item, status: 'in_progress', content: []}}],
      ['response.content_part.added', {type: 'response.content_part.added', sequence_number: 2, item_id: 'msg_fake', output_index: 0, content_index: 0, part: {type: 'output_text', text: '', annotations: []}}],
      ['response.output_text.delta', {type: 'response.output_text.delta', sequence_number: 3, item_id: 'msg_fake', output_index: 0, content_index: 0, delta: FAKE_COMPLETION}],
      ['response.output_text.done', {type: 'response.output_text.done', sequence_number: 4, item_id: 'msg_fake', output_index: 0, content_index: 0, text: FAKE_COMPLETION}],
      ['response.content_part.done', {type: 'response.content_part.done', sequence_number: 5, item_id: 'msg_fake', output_index: 0, content_index: 0, part: {type: 'output_text', text: FAKE_COMPLETION, annotations: []}}],
      ['response.output_item.done', {type: 'response.output_item.done', sequence_number: 6, output_index: 0, item}],
      ['response.completed', {type: 'response.completed', sequence_number: 7, response: {...response, status: 'completed', output: [item], usage}}],
    ])
    return
  }
  if (path.includes(':streamGenerateContent') || path.includes(':generateContent')) {
    // Gemini CLI asks for JSON of a schema (its model router) besides the completion itself.
    const config = (json.generationConfig ?? {}) as {responseMimeType?: string; responseJsonSchema?: unknown; responseSchema?: unknown}
    const text = config.responseMimeType === 'application/json' ? JSON.stringify(fromSchema(config.responseJsonSchema ?? config.responseSchema)) : FAKE_COMPLETION
    const chunk = {candidates: [{content: {parts: [{text}], role: 'model'}, finishReason: 'STOP', index: 0}], usageMetadata: {promptTokenCount: 5, candidatesTokenCount: 8, totalTokenCount: 13}, modelVersion: 'gemini-fake'}
    if (path.includes(':streamGenerateContent')) sse(res, [[undefined, chunk]])
    else {
      res.writeHead(200, {'content-type': 'application/json'})
      res.end(JSON.stringify(chunk))
    }
    return
  }
  res.writeHead(200, {'content-type': 'application/json'})
  res.end(JSON.stringify({path, method: req.method}))
}

/** The smallest value a JSON schema accepts: strings say "fake", numbers are their minimum (or 1). */
function fromSchema(schema: unknown): unknown {
  const node = (schema ?? {}) as {type?: string; properties?: Record<string, unknown>; items?: unknown; minimum?: number; enum?: unknown[]}
  if (node.enum !== undefined) return node.enum[0]
  switch (String(node.type ?? 'object').toLowerCase()) {
    case 'string': {
      return 'fake'
    }
    case 'number':
    case 'integer': {
      return node.minimum ?? 1
    }
    case 'boolean': {
      return false
    }
    case 'array': {
      return []
    }
    default: {
      return Object.fromEntries(Object.entries(node.properties ?? {}).map(([key, value]) => [key, fromSchema(value)]))
    }
  }
}

/** A CA of the test's own and a server certificate from it for `hosts`: TLS servers a test can point the gateway at. */
export function testTls(hosts: readonly string[]): {ca: string; key: string; cert: string} {
  const ca = generateKeyPairSync('ec', {namedCurve: 'prime256v1'})
  const leaf = generateKeyPairSync('ec', {namedCurve: 'prime256v1'})
  const now = Date.now()
  const issuer = {name: `test CA ${randomBytes(4).toString('hex')}`, privateKey: ca.privateKey, keyId: keyIdentifier(ca.publicKey)}
  const caCert = issueCertificate({subject: issuer.name, publicKey: ca.publicKey, issuer, notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 86_400_000), hosts, ca: true})
  const cert = issueCertificate({subject: hosts[0]!, publicKey: leaf.publicKey, issuer, notBefore: new Date(now - 3_600_000), notAfter: new Date(now + 86_400_000), hosts, ca: false})
  return {ca: caCert, key: leaf.privateKey.export({type: 'pkcs8', format: 'pem'}) as string, cert}
}
