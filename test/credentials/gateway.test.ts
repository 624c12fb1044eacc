import {expect} from 'chai'
import {readFile, rm, writeFile} from 'node:fs/promises'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {join} from 'node:path'

import type {GrantRequest} from '../../src/credentials/wire.js'
import type {AuditEvent} from '../../src/egress/audit.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {RecordingServer} from '../egress/fixtures.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {FAKE_COMPLETION, FakeModelApi} from './fake-apis.js'

const REAL_KEY = `sk-ant-api03-REAL-${'k'.repeat(40)}`

/** The route the claude plugin declares, pointed at a fake upstream on loopback. */
function anthropicRoute(upstream: string, secret: GrantRequest['routes'][number]['secret'] = [{provided: REAL_KEY, from: 'ANTHROPIC_API_KEY from your environment'}]): GrantRequest['routes'][number] {
  return {
    name: 'anthropic',
    upstream,
    header: 'x-api-key',
    format: '{}',
    secret,
    env: {ANTHROPIC_BASE_URL: '{url}', ANTHROPIC_AUTH_TOKEN: '{phantom}', ANTHROPIC_API_KEY: ''},
  }
}

const MESSAGE = `{"model":"claude-fake","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

describe('credential gateway: routes on the sandbox loopback (API keys, no TLS interception)', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-gateway-')
  let dir = ''
  let bwrapBefore = new Set<number>()
  let test: TestDaemon
  let api: FakeModelApi
  let other: RecordingServer
  let slow: Server
  let slowPort = 0
  let closedPort = 0
  let sandboxId = ''

  const sh = (script: string, env: Record<string, string> = {}) => test.client.run(sandboxId, {argv: ['sh', '-c', script], env})
  const audit = async (): Promise<AuditEvent[]> => {
    const events: AuditEvent[] = []
    for await (const event of test.client.egressEvents(sandboxId, false)) events.push(event)
    return events
  }

  before(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    api = await FakeModelApi.start()
    other = await RecordingServer.start('other')
    // An upstream that sends its first event at once and the second two seconds later.
    slow = createServer((_req, res) => {
      res.writeHead(200, {'content-type': 'text/event-stream'})
      res.write('data: first\n\n')
      setTimeout(() => res.end('data: second\n\n'), 2000)
    })
    await new Promise<void>((resolve) => slow.listen(0, '127.0.0.1', resolve))
    slowPort = (slow.address() as AddressInfo).port
    const closed = createServer()
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve))
    closedPort = (closed.address() as AddressInfo).port
    await new Promise<void>((resolve) => closed.close(() => resolve()))

    test = await startTestDaemon(join(dir, 'daemon'))
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [api.port, other.port, slowPort, closedPort]}], deny: []})
    sandboxId = (await test.client.createSandbox({policy, workspace_source: null})).sandbox_id
  })

  after(async () => {
    await test?.daemon.close({shutdownSandboxes: true})
    await api?.close()
    await other?.close()
    slow?.closeAllConnections()
    await new Promise<void>((resolve) => (slow ? slow.close(() => resolve()) : resolve()))
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })

  it('gives the sandbox a phantom and the route\'s URL; a request with the phantom reaches the upstream with the real key, streamed back', async () => {
    const summary = await test.client.grantCredentials(sandboxId, {routes: [anthropicRoute(`http://127.0.0.1:${api.port}`)], logins: [], write_back: true})
    expect(summary.routes).to.deep.equal([{name: 'anthropic', upstream: `http://127.0.0.1:${api.port}`, url: 'http://127.0.0.1:3129/anthropic', source: 'ANTHROPIC_API_KEY from your environment', intercepted: []}])
    expect(summary.env).to.deep.equal(['ANTHROPIC_API_KEY', 'ANTHROPIC_AUTH_TOKEN', 'ANTHROPIC_BASE_URL'])

    const env = await sh('echo "$ANTHROPIC_BASE_URL"; echo "$ANTHROPIC_AUTH_TOKEN"; echo "[$ANTHROPIC_API_KEY]"')
    const [url, phantom, empty] = env.stdout.trim().split('\n')
    expect(url).to.equal('http://127.0.0.1:3129/anthropic')
    expect(phantom).to.match(/^[A-Za-z0-9_-]{43}$/)
    expect(empty).to.equal('[]')

    api.requests.length = 0
    const call = await sh(`curl -sS -N "$ANTHROPIC_BASE_URL/v1/messages" -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" -H 'content-type: application/json' -d '${MESSAGE}'`)
    expect(call.exit_code, call.stderr).to.equal(0)
    expect(call.stdout).to.contain('event: message_start').and.to.contain(FAKE_COMPLETION)
    expect(api.requests).to.have.length(1)
    const [seen] = api.requests
    expect(seen!.url).to.equal('/v1/messages')
    expect(seen!.headers['x-api-key']).to.equal(REAL_KEY)
    expect(seen!.headers.authorization, 'the phantom is removed').to.equal(undefined)
    expect(api.headerText() + seen!.body).not.to.contain(phantom)
  })

  it('answers 401 to a request carrying another token, and nothing reaches the upstream', async () => {
    api.requests.length = 0
    const call = await sh(`curl -sS -w '\\n%{http_code}' "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: sk-ant-api03-guessed" -d '{}'`)
    const [body, status] = call.stdout.trim().split('\n')
    expect(status).to.equal('401')
    expect(JSON.parse(body!)).to.have.nested.property('error.code', 'phantom_invalid')
    expect(api.requests).to.deep.equal([])
  })

  it('does not swap the phantom on its way to any other allowed host (through the proxy)', async () => {
    other.requests.length = 0
    const call = await sh(`curl -sS "http://127.0.0.1:${other.port}/leak" -H "x-api-key: $ANTHROPIC_AUTH_TOKEN"`, {NO_PROXY: '', no_proxy: ''})
    expect(call.exit_code, call.stderr).to.equal(0)
    expect(other.requests).to.have.length(1)
    const phantom = (await sh('printf %s "$ANTHROPIC_AUTH_TOKEN"')).stdout
    expect(other.requests[0]!.headers['x-api-key']).to.equal(phantom)
    expect(JSON.stringify(other.requests)).not.to.contain(REAL_KEY)
  })

  it('streams without buffering: the first event arrives while the upstream is still sending', async () => {
    await test.client.grantCredentials(sandboxId, {routes: [{...anthropicRoute(`http://127.0.0.1:${slowPort}`), name: 'slow', env: {SLOW_URL: '{url}', SLOW_TOKEN: '{phantom}'}}], logins: [], write_back: true})
    const script = `const t=Date.now();require('http').get(process.env.SLOW_URL+'/stream',{headers:{'x-api-key':process.env.SLOW_TOKEN}},(r)=>{let n=0;r.on('data',(c)=>{if(n++===0)console.log('first',Date.now()-t)});r.on('end',()=>console.log('end',Date.now()-t))})`
    const call = await test.client.run(sandboxId, {argv: ['node', '-e', script], env: {}})
    expect(call.exit_code, call.stderr).to.equal(0)
    const first = Number(/first (\d+)/.exec(call.stdout)?.[1])
    const end = Number(/end (\d+)/.exec(call.stdout)?.[1])
    expect(first, call.stdout).to.be.below(1000)
    expect(end, call.stdout).to.be.at.least(1900)
  })

  it('answers 502 with a JSON error at once when the upstream is down, and 403 when the policy does not allow it', async () => {
    await test.client.grantCredentials(sandboxId, {
      routes: [
        {...anthropicRoute(`http://127.0.0.1:${closedPort}`), name: 'down', env: {DOWN_URL: '{url}', DOWN_TOKEN: '{phantom}'}},
        {...anthropicRoute('http://127.0.0.2:9'), name: 'elsewhere', env: {ELSEWHERE_URL: '{url}', ELSEWHERE_TOKEN: '{phantom}'}},
      ],
      logins: [],
      write_back: true,
    })
    const started = Date.now()
    const down = await sh(`curl -sS -m 20 -w '\\n%{http_code}' "$DOWN_URL/v1/messages" -H "x-api-key: $DOWN_TOKEN" -d '{}'`)
    expect(Date.now() - started).to.be.below(5000)
    const [downBody, downStatus] = down.stdout.trim().split('\n')
    expect(downStatus).to.equal('502')
    expect(JSON.parse(downBody!).error).to.include({code: 'upstream_failed'})
    expect(JSON.parse(downBody!).error.message).to.contain('ECONNREFUSED')
    const refused = await sh(`curl -sS -w '\\n%{http_code}' "$ELSEWHERE_URL/v1/messages" -H "x-api-key: $ELSEWHERE_TOKEN" -d '{}'`)
    const [refusedBody, refusedStatus] = refused.stdout.trim().split('\n')
    expect(refusedStatus).to.equal('403')
    expect(JSON.parse(refusedBody!).error.message).to.contain('host_not_allowed: 127.0.0.2:9')
  })

  it('answers 503 naming the missing source when the route\'s key file is gone from the host', async () => {
    const keyFile = join(dir, 'key-file')
    await writeFile(keyFile, 'key-from-a-file\n')
    await test.client.grantCredentials(sandboxId, {routes: [{...anthropicRoute(`http://127.0.0.1:${api.port}`, [{file: keyFile}]), name: 'nokey', env: {NOKEY_URL: '{url}', NOKEY_TOKEN: '{phantom}'}}], logins: [], write_back: true})
    api.requests.length = 0
    await sh(`curl -sS "$NOKEY_URL/v1/messages" -H "x-api-key: $NOKEY_TOKEN" -d '${MESSAGE}'`)
    expect(api.requests[0]!.headers['x-api-key'], 'read from the file when used').to.equal('key-from-a-file')
    await rm(keyFile)
    const call = await sh(`curl -sS -w '\\n%{http_code}' "$NOKEY_URL/v1/messages" -H "x-api-key: $NOKEY_TOKEN" -d '{}'`)
    const [body, status] = call.stdout.trim().split('\n')
    expect(status).to.equal('503')
    expect(JSON.parse(body!).error.message).to.contain(keyFile)
  })

  it('runs a host command for a token once, on first use, and keeps it for its TTL', async () => {
    const counter = join(dir, 'runs')
    await writeFile(counter, '')
    await test.client.grantCredentials(sandboxId, {
      routes: [{...anthropicRoute(`http://127.0.0.1:${api.port}`, [{command: ['sh', '-c', `echo run >> ${counter}; echo token-from-command`], ttl_seconds: 900}]), name: 'cmd', env: {CMD_URL: '{url}', CMD_TOKEN: '{phantom}'}}],
      logins: [],
      write_back: true,
    })
    expect(await readFile(counter, 'utf8'), 'not run before the first request').to.equal('')
    api.requests.length = 0
    for (let i = 0; i < 3; i++) await sh(`curl -sS "$CMD_URL/v1/messages" -H "x-api-key: $CMD_TOKEN" -d '${MESSAGE}'`)
    expect(api.requests.map((request) => request.headers['x-api-key'])).to.deep.equal(['token-from-command', 'token-from-command', 'token-from-command'])
    expect(await readFile(counter, 'utf8')).to.equal('run\n')
  })

  it('audits every request with its route, status and bytes, and never a key or a phantom', async () => {
    const phantom = (await sh('printf %s "$ANTHROPIC_AUTH_TOKEN"')).stdout
    const events = (await audit()).filter((event) => event.protocol === 'gateway')
    const injected = events.find((event) => event.reason === 'credential_injected' && event.credential === 'anthropic')
    expect(injected).to.include({action: 'allow', host: '127.0.0.1', port: api.port, resolved_ip: '127.0.0.1', method: 'POST', path: '/anthropic/v1/messages', status: 200})
    expect(injected!.bytes_down).to.be.above(0)
    expect(events.find((event) => event.reason === 'phantom_invalid')).to.include({action: 'deny', status: 401, credential: 'anthropic'})
    expect(events.find((event) => event.reason === 'credential_unavailable')).to.include({credential: 'nokey', status: 503})
    const text = await readFile(join(dir, 'daemon/state/sandboxes', sandboxId, 'egress.jsonl'), 'utf8')
    expect(text).not.to.contain(REAL_KEY)
    expect(text).not.to.contain(phantom)
    expect(text).not.to.contain('token-from-command')
  })

  it('keeps serving a kept sandbox after the daemon restarts, with the same phantom', async () => {
    const before = (await sh('printf %s "$ANTHROPIC_AUTH_TOKEN"')).stdout
    await test.daemon.close()
    test = await startTestDaemon(join(dir, 'daemon'))
    const after = (await sh('printf %s "$ANTHROPIC_AUTH_TOKEN"')).stdout
    expect(after).to.equal(before)
    api.requests.length = 0
    const call = await sh(`curl -sS "$ANTHROPIC_BASE_URL/v1/messages" -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" -d '${MESSAGE}'`)
    expect(call.stdout).to.contain(FAKE_COMPLETION)
    expect(api.requests[0]!.headers['x-api-key']).to.equal(REAL_KEY)
    const stateFile = join(dir, 'daemon/state/sandboxes', sandboxId, 'credentials.json')
    const {stat} = await import('node:fs/promises')
    expect((await stat(stateFile)).mode & 0o777, 'the saved grant is the owner\'s alone').to.equal(0o600)
  })

  it('serves no egress for a kept sandbox whose saved grant is unreadable after a restart, and says why (fail closed)', async () => {
    const stateFile = join(dir, 'daemon/state/sandboxes', sandboxId, 'credentials.json')
    const saved = await readFile(stateFile, 'utf8')
    await test.daemon.close()
    await writeFile(stateFile, '{"routes": [')
    try {
      test = await startTestDaemon(join(dir, 'daemon'))
      const egress = (await test.client.inspectSandbox(sandboxId)).egress
      expect(egress?.listening).to.equal(false)
      expect(egress?.listen_error).to.match(/^its credential gateway could not be served again: .*JSON/)
      expect(test.logs.join('\n')).to.match(new RegExp(`sandbox ${sandboxId}: egress proxy cannot listen \\(connections out are refused meanwhile\\), trying again every 2 s: its credential gateway could not be served again`))
    } finally {
      await test.daemon.close()
      await writeFile(stateFile, saved)
      test = await startTestDaemon(join(dir, 'daemon'))
    }
    expect((await test.client.inspectSandbox(sandboxId)).egress?.listening).to.equal(true)
  })
})
