import {expect} from 'chai'
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import {request as httpsRequest} from 'node:https'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {withLoginLock} from '../../src/credentials/logins.js'
import type {GrantedLogin} from '../../src/credentials/wire.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {mapResolver} from '../egress/fixtures.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {testTls} from './fake-apis.js'
import {FakeOAuth} from './fake-oauth.js'

const CLIENT = fileURLToPath(new URL('oauth-client.mjs', import.meta.url))

interface AuthFile {
  tokens: {access_token: string; refresh_token: string; id_token: string}
  last_refresh?: string
  account: string
}

describe('credential gateway: OAuth logins through selective TLS interception (fake provider on loopback)', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-oauth-')
  let dir = ''
  let bwrapBefore = new Set<number>()
  let test: TestDaemon
  let fake: FakeOAuth
  let tls: ReturnType<typeof testTls>
  let hostFile = ''
  let workspace = ''

  const login = (file: string): GrantedLogin => ({
    name: 'fake',
    file: '~/.fake/auth.json',
    host_file: file,
    tokens: [
      {path: 'tokens.access_token', kind: 'access'},
      {path: 'tokens.refresh_token', kind: 'refresh'},
      {path: 'tokens.id_token', kind: 'id'},
    ],
    refreshed_at: 'last_refresh',
    token_endpoints: [{host: 'auth.test', port: fake.port, path: '/oauth/token'}],
    api_hosts: [{host: 'api.test', port: fake.port}],
    login_command: 'fake login',
  })

  const writeHostLogin = async (file: string) => {
    await mkdir(join(file, '..'), {recursive: true})
    await writeFile(file, JSON.stringify({tokens: fake.login(), account: 'acct-1'} satisfies AuthFile), {mode: 0o600})
  }

  const newSandbox = async (file = hostFile, writeBack = true) => {
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: 'auth.test', ports: [fake.port]}, {host: 'api.test', ports: [fake.port]}, {host: 'other.test', ports: [fake.port]}, {host: '127.0.0.1', ports: [fake.port]}], deny: []})
    const id = (await test.client.createSandbox({policy, workspace_source: workspace})).sandbox_id
    const summary = await test.client.grantCredentials(id, {routes: [], logins: [login(file)], write_back: writeBack})
    return {id, summary}
  }
  const client = async (id: string, ...args: string[]): Promise<unknown> => {
    const result = await test.client.run(id, {argv: ['node', '/workspace/oauth-client.mjs', ...args.map(String)], env: {}})
    if (result.exit_code !== 0) throw new Error(`the client failed in the sandbox: ${result.stderr}`)
    return JSON.parse(result.stdout) as unknown
  }
  /** What the host's own CLI does to refresh: the refresh token from the host file, straight to the provider. */
  const hostRefresh = (refreshToken: string): Promise<{status: number; tokens?: AuthFile['tokens']}> =>
    new Promise((resolve, reject) => {
      const req = httpsRequest({host: '127.0.0.1', port: fake.port, method: 'POST', path: '/oauth/token', ca: tls.ca, servername: 'auth.test', headers: {'content-type': 'application/json'}}, (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () => resolve({status: res.statusCode ?? 0, ...(res.statusCode === 200 && {tokens: JSON.parse(text) as AuthFile['tokens']})}))
      })
      req.on('error', reject)
      req.end(JSON.stringify({grant_type: 'refresh_token', refresh_token: refreshToken}))
    })
  const sh = (id: string, script: string) => test.client.run(id, {argv: ['sh', '-c', script], env: {}})
  const sandboxAuth = async (id: string): Promise<AuthFile> => JSON.parse((await sh(id, 'cat ~/.fake/auth.json')).stdout) as AuthFile

  before(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    tls = testTls(['auth.test', 'api.test', 'other.test'])
    fake = await FakeOAuth.start(tls)
    workspace = join(dir, 'workspace')
    await mkdir(workspace)
    await copyFile(CLIENT, join(workspace, 'oauth-client.mjs'))
    hostFile = join(dir, 'host-home/.fake/auth.json')
    await writeHostLogin(hostFile)
    const resolver = mapResolver({'auth.test': ['127.0.0.1'], 'api.test': ['127.0.0.1'], 'other.test': ['127.0.0.1']})
    test = await startTestDaemon(join(dir, 'daemon'), resolver, {upstreamCa: [tls.ca]})
  })

  after(async () => {
    await test?.daemon.close({shutdownSandboxes: true})
    await fake?.close()
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })

  it('gives the sandbox the auth file with phantoms only (claims kept), and its API calls carry the real token', async () => {
    const {id, summary} = await newSandbox()
    expect(summary.logins).to.deep.equal([{name: 'fake', file: '~/.fake/auth.json', state: 'in use', login_command: 'fake login', intercepted: [`auth.test:${fake.port}`, `api.test:${fake.port}`]}])
    const inside = await sandboxAuth(id)
    const host = JSON.parse(await readFile(hostFile, 'utf8')) as AuthFile
    for (const kind of ['access_token', 'refresh_token', 'id_token'] as const) expect(fake.issued).not.to.include(inside.tokens[kind])
    expect(inside.tokens.access_token.split('.')[1], 'the phantom keeps the claims an agent reads').to.equal(host.tokens.access_token.split('.')[1])
    expect(inside.account).to.equal('acct-1')
    const whoami = await client(id, 'whoami', 'auth.test', String(fake.port))
    expect(whoami, JSON.stringify(whoami)).to.deep.include({status: 200})
    expect(fake.presented.every((token) => fake.issued.includes(token)), 'no phantom ever reached the provider').to.equal(true)
    const events = []
    for await (const event of test.client.egressEvents(id, false)) events.push(event)
    expect(events.find((event) => event.protocol === 'connect')).to.include({host: 'api.test', port: fake.port, action: 'allow', intercepted: true})
    expect(events.find((event) => event.protocol === 'gateway')).to.include({host: 'api.test', credential: 'fake', reason: 'credential_injected', method: 'GET', path: '/api/whoami', status: 200})
  })

  it('two sandboxes and a host client refresh at once, again and again: no refresh token is used twice, and the host file ends on the live lineage', async () => {
    const a = (await newSandbox()).id
    const b = (await newSandbox()).id
    const rounds = 6
    const hostClient = async () => {
      const refreshed: number[] = []
      for (let i = 0; i < rounds; i++) {
        // A host tool that takes the login's lock, as the gateway's refresher does (docs/credentials.md).
        await withLoginLock(join(dir, 'daemon/state'), hostFile, async () => {
          const file = JSON.parse(await readFile(hostFile, 'utf8')) as AuthFile
          const answer = await hostRefresh(file.tokens.refresh_token)
          if (answer.tokens) await writeFile(hostFile, JSON.stringify({...file, tokens: answer.tokens}))
          refreshed.push(answer.status)
        })
      }
      return refreshed
    }
    const refreshesBefore = fake.refreshes
    const [fromA, fromB, fromHost] = await Promise.all([client(a, 'loop', 'auth.test', String(fake.port), String(rounds)), client(b, 'loop', 'auth.test', String(fake.port), String(rounds)), hostClient()])
    expect(fromHost).to.deep.equal(Array.from({length: rounds}, () => 200))
    for (const results of [fromA, fromB] as {refresh: number; api: number}[][]) {
      expect(results, JSON.stringify(results)).to.have.length(rounds)
      for (const result of results) expect(result).to.deep.equal({refresh: 200, api: 200})
    }
    expect(fake.reused, 'refresh_token_reused answers').to.equal(0)
    expect(fake.refreshes - refreshesBefore).to.be.at.least(1)
    const host = JSON.parse(await readFile(hostFile, 'utf8')) as AuthFile
    expect(host.tokens.refresh_token, 'the host keeps the live refresh token').to.equal(fake.refresh)
    expect(host.tokens.access_token).to.equal(fake.access)
    expect(host.account, 'every other field kept').to.equal('acct-1')
    expect(host.last_refresh).to.be.a('string')
    // Neither sandbox ever held a real token: not in its file, not in any environment.
    for (const id of [a, b]) {
      const seen = (await sh(id, 'cat ~/.fake/auth.json; cat /proc/[0-9]*/environ 2>/dev/null')).stdout
      for (const token of fake.issued) expect(seen).not.to.contain(token)
    }
    expect(fake.presented.every((token) => fake.issued.includes(token))).to.equal(true)
  })

  it('the host\'s own client refreshing between the sandboxes\' refreshes (no lock) is adopted, not raced', async () => {
    const a = (await newSandbox()).id
    for (let i = 0; i < 3; i++) {
      const file = JSON.parse(await readFile(hostFile, 'utf8')) as AuthFile
      const answer = await hostRefresh(file.tokens.refresh_token)
      expect(answer.status).to.equal(200)
      await writeFile(hostFile, JSON.stringify({...file, tokens: answer.tokens}))
      expect(await client(a, 'refresh', 'auth.test', String(fake.port))).to.deep.include({status: 200})
      expect(await client(a, 'whoami', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    }
    expect(fake.reused).to.equal(0)
  })

  it('trusts its own CA in strict clients (curl with only the bundle, Node) for intercepted hosts; other tunnels stay opaque, verified against the real roots; the CA key is nowhere in the sandbox', async () => {
    const {id} = await newSandbox()
    const port = fake.port
    const bundle = (await sh(id, 'printf %s "$SSL_CERT_FILE"')).stdout
    expect(bundle).to.equal('/home/cleanroom/.cache/cleanroom/ca-bundle.pem')
    const vars = (await sh(id, 'for v in NODE_EXTRA_CA_CERTS CODEX_CA_CERTIFICATE REQUESTS_CA_BUNDLE CURL_CA_BUNDLE GIT_SSL_CAINFO; do eval echo \\$$v; done')).stdout.trim().split('\n')
    expect(vars).to.deep.equal(Array.from({length: 5}, () => bundle))
    const strict = await sh(id, `curl -sS --cacert ${bundle} --capath /nonexistent -w ' %{http_code}' https://api.test:${port}/api/whoami`)
    expect(strict.stdout, strict.stderr).to.match(/ 401$/)
    expect(await client(id, 'get', 'api.test', String(port), '/api/whoami')).to.deep.equal({status: 401})
    // other.test is not intercepted: its own certificate (from the test's CA, in no bundle) reaches the client.
    const opaque = await sh(id, `curl -sS --cacert ${bundle} https://other.test:${port}/api/whoami`)
    expect(opaque.exit_code, opaque.stdout).to.equal(60)
    await sh(id, `cat > /tmp/test-ca.pem <<'EOF'\n${tls.ca}EOF`)
    const direct = await sh(id, `curl -sS --cacert /tmp/test-ca.pem -w ' %{http_code}' https://other.test:${port}/api/whoami`)
    expect(direct.stdout, direct.stderr).to.match(/ 401$/)
    expect(await client(id, 'get', 'other.test', String(port), '/')).to.have.property('error').that.matches(/CERT|SIGNATURE|VERIFY/)
    // The bundle holds the system's roots too, and the sandbox's CA, but never its key.
    const system = await readFile('/etc/ssl/certs/ca-certificates.crt', 'utf8')
    const inBundle = (await sh(id, `cat ${bundle}`)).stdout
    expect(inBundle.startsWith(system), 'the system roots come first').to.equal(true)
    const {key} = JSON.parse(await readFile(join(dir, 'daemon/state/sandboxes', id, 'ca.json'), 'utf8')) as {key: string}
    const keyLine = key.split('\n')[1]!
    const found = await sh(id, `grep -rlF '${keyLine}' /home /workspace /tmp 2>/dev/null; ls ${join(dir, 'daemon/state')} 2>&1 | head -1`)
    expect(found.stdout.trim()).to.match(/No such file or directory$/)
  })

  it('an expired host login: the refresh is answered 401 with a message naming the login command; the host file is left as it was', async () => {
    const {id} = await newSandbox()
    const before = await readFile(hostFile, 'utf8')
    fake.mode = 'expired'
    try {
      const answer = (await client(id, 'refresh', 'auth.test', String(fake.port))) as {status: number; json: {error: string; error_description: string}}
      expect(answer.status).to.equal(400)
      expect(answer.json.error).to.equal('invalid_grant')
      expect(answer.json.error_description).to.contain('run `fake login` on the host')
    } finally {
      fake.mode = 'normal'
    }
    expect(await readFile(hostFile, 'utf8')).to.equal(before)
  })

  it('a token response that cannot be read fails closed: 502, no token passed on, nothing stored', async () => {
    const {id} = await newSandbox()
    const before = await readFile(hostFile, 'utf8')
    const issuedBefore = fake.issued.length
    fake.mode = 'malformed'
    let answer: {status: number; text: string}
    try {
      answer = (await client(id, 'refresh', 'auth.test', String(fake.port))) as {status: number; text: string}
    } finally {
      fake.mode = 'normal'
    }
    expect(answer.status).to.equal(502)
    expect(answer.text).to.contain('token_response_invalid')
    expect(answer.text).not.to.match(/access_token=/)
    expect(fake.issued.length).to.equal(issuedBefore)
    expect(await readFile(hostFile, 'utf8')).to.equal(before)
    const events = []
    for await (const event of test.client.egressEvents(id, false)) events.push(event)
    expect(events.find((event) => event.reason === 'token_response_invalid')).to.include({protocol: 'gateway', credential: 'fake', status: 502})
  })

  it('an answer with a token from a path of the token host that is not a token endpoint is refused (fail closed)', async () => {
    const {id} = await newSandbox()
    expect(await client(id, 'get', 'auth.test', String(fake.port), '/oauth/leak')).to.deep.equal({status: 502})
    expect(await client(id, 'get', 'auth.test', String(fake.port), '/nothing-here')).to.deep.equal({status: 404})
  })

  it('a login made inside the sandbox is captured: the sandbox gets phantoms, the gateway keeps the tokens, the host has no file', async () => {
    const missing = join(dir, 'nobody-home/.fake/auth.json')
    const {id, summary} = await newSandbox(missing)
    expect(summary.logins[0]).to.include({state: 'no host login'})
    const answer = (await client(id, 'code', 'auth.test', String(fake.port))) as {status: number; json: Record<string, string>}
    expect(answer.status).to.equal(200)
    expect(fake.issued).not.to.include(answer.json.access_token)
    expect(fake.issued).not.to.include(answer.json.refresh_token)
    expect(await client(id, 'whoami', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    expect(await client(id, 'refresh', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    expect(await client(id, 'whoami', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    const {access} = await import('node:fs/promises')
    expect(await access(missing).then(() => true, () => false)).to.equal(false)
  })

  it('with write_back off, refreshes stay in the daemon\'s store and the host file is not touched', async () => {
    const ownFile = join(dir, 'host-two/.fake/auth.json')
    await writeHostLogin(ownFile)
    const before = await readFile(ownFile, 'utf8')
    const {id} = await newSandbox(ownFile, false)
    expect(await client(id, 'refresh', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    expect(await client(id, 'whoami', 'auth.test', String(fake.port))).to.deep.include({status: 200})
    expect(await readFile(ownFile, 'utf8')).to.equal(before)
    expect(fake.reused).to.equal(0)
  })
})
