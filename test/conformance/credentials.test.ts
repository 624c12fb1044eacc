import {expect} from 'chai'
import {join} from 'node:path'

import type {GrantRequest} from '../../src/credentials/wire.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {FAKE_COMPLETION, FakeModelApi, testTls} from '../credentials/fake-apis.js'
import {mapResolver} from '../egress/fixtures.js'
import {leftoverSandboxes, sandboxPids, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {BACKENDS, requireBackend} from './backends.js'

const REAL_KEY = `sk-ant-api03-REAL-${'c'.repeat(40)}`
const INTERCEPTED_KEY = `sk-tool-REAL-${'i'.repeat(40)}`
/** A Node client as an agent is one: through the proxy (CONNECT to HTTPS_PROXY), trusting Node's roots plus NODE_EXTRA_CA_CERTS. */
const NODE_CLIENT = `
const {request} = require('node:http'), https = require('node:https'), tls = require('node:tls')
const [port, body] = process.argv.slice(1), proxy = new URL(process.env.HTTPS_PROXY)
request({host: proxy.hostname, port: proxy.port, method: 'CONNECT', path: 'api.test:' + port}).on('connect', (res, socket) => {
  https.request({host: 'api.test', port, method: 'POST', path: '/v1/messages', headers: {authorization: 'Bearer ' + process.env.TOOL_KEY, 'content-type': 'application/json'},
    createConnection: () => tls.connect({socket, servername: 'api.test'})}, (answer) => answer.pipe(process.stdout)).on('error', (error) => console.error(error.code)).end(body)
}).end()`
const MESSAGE = `{"model":"claude-fake","max_tokens":16,"stream":true,"messages":[{"role":"user","content":"hi"}]}`

/**
 * The credential gateway, the same on every backend: a route's URL on the
 * sandbox's loopback and an intercepted TLS host each get the real key to the
 * upstream, while everything the workload can read holds only phantoms; the
 * per-sandbox CA reaches the workload as the trust bundle its clients read.
 */
for (const backend of BACKENDS) {
  describe(`credential gateway conformance (${backend})`, function () {
    this.timeout(120_000)
    const dirs = tempDirs('cleanroom-credentials-conformance-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined
    let api: FakeModelApi | undefined
    let tlsApi: FakeModelApi | undefined
    let sandboxId = ''
    let startDaemon: () => Promise<TestDaemon>

    const sh = (script: string) => test!.client.run(sandboxId, {argv: ['sh', '-c', script], env: {}})

    before(async () => {
      await requireBackend(backend)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      const tls = testTls(['api.test'])
      api = await FakeModelApi.start()
      tlsApi = await FakeModelApi.start(tls)
      startDaemon = () => startTestDaemon(join(dir, 'daemon'), mapResolver({'api.test': ['127.0.0.1']}), {upstreamCa: [tls.ca]})
      test = await startDaemon()
      const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [api.port, tlsApi.port]}, {host: 'api.test', ports: [tlsApi.port]}], deny: []})
      sandboxId = (await test.client.createSandbox({backend, policy, workspace_source: null})).sandbox_id
      const routes: GrantRequest['routes'] = [
        {
          name: 'anthropic',
          upstream: `http://127.0.0.1:${api.port}`,
          header: 'x-api-key',
          format: '{}',
          secret: [{provided: REAL_KEY, from: 'ANTHROPIC_API_KEY from your environment'}],
          env: {ANTHROPIC_BASE_URL: '{url}', ANTHROPIC_AUTH_TOKEN: '{phantom}', ANTHROPIC_API_KEY: ''},
        },
        {
          name: 'tool',
          upstream: `https://api.test:${tlsApi.port}`,
          header: 'authorization',
          format: 'Bearer {}',
          secret: [{provided: INTERCEPTED_KEY, from: 'TOOL_KEY from your environment'}],
          env: {TOOL_KEY: '{phantom}'},
          hosts: [{host: 'api.test', port: tlsApi.port}],
        },
      ]
      const summary = await test.client.grantCredentials(sandboxId, {routes, logins: [], write_back: true})
      expect(summary.routes.map((route) => route.intercepted)).to.deep.equal([[], [`api.test:${tlsApi.port}`]])
    })

    after(async () => {
      await test?.daemon.close({shutdownSandboxes: true})
      await api?.close()
      await tlsApi?.close()
      // No dir: the backend was missing and nothing was made.
      if (dir !== '') expect(await leftoverSandboxes(sandboxesBefore, dir), 'sandboxes of this suite still running').to.deep.equal([])
      await dirs.cleanup()
    })

    it('a request to the route\'s URL with the phantom reaches the upstream with the real key; the workload\'s environment and files hold only phantoms', async () => {
      const env = await sh('echo "$ANTHROPIC_BASE_URL"; echo "$ANTHROPIC_AUTH_TOKEN"; echo "[$ANTHROPIC_API_KEY]"; echo "$TOOL_KEY"')
      const [url, phantom, empty, toolPhantom] = env.stdout.trim().split('\n')
      expect(url).to.equal('http://127.0.0.1:3129/anthropic')
      expect(phantom).to.match(/^[A-Za-z0-9_-]{43}$/)
      expect(empty).to.equal('[]')
      expect(toolPhantom).to.match(/^[A-Za-z0-9_-]{43}$/)

      const call = await sh(`curl -sS -N "$ANTHROPIC_BASE_URL/v1/messages" -H "Authorization: Bearer $ANTHROPIC_AUTH_TOKEN" -H 'content-type: application/json' -d '${MESSAGE}'`)
      expect(call.exit_code, call.stderr).to.equal(0)
      expect(call.stdout).to.contain(FAKE_COMPLETION)
      expect(api!.requests).to.have.length(1)
      expect(api!.requests[0]!.headers['x-api-key']).to.equal(REAL_KEY)
      expect(api!.requests[0]!.headers.authorization, 'the phantom is removed').to.equal(undefined)

      const search = await sh(`env | grep -cF -e "$ANTHROPIC_AUTH_TOKEN"; env | grep -cF -e '${REAL_KEY}' -e '${INTERCEPTED_KEY}'; grep -rlsF -e '${REAL_KEY}' -e '${INTERCEPTED_KEY}' /home /workspace /tmp /etc /run; true`)
      expect(search.stdout, 'no real key in the environment or a file the workload can read').to.equal('1\n0\n')
    })

    it('an intercepted TLS host gets the real key through the proxy, the sandbox\'s CA trusted by curl and Node through the bundle its variables name', async () => {
      const bundle = (await sh('printf %s "$SSL_CERT_FILE"')).stdout
      expect(bundle).to.equal('/home/cleanroom/.cache/cleanroom/ca-bundle.pem')
      expect((await sh('printf %s "$NODE_EXTRA_CA_CERTS"')).stdout).to.equal(bundle)
      expect((await sh(`stat -c '%U %a' ${bundle}`)).stdout, 'the sandbox user\'s, readable by its tools').to.equal('cleanroom 644\n')
      const url = `https://api.test:${tlsApi!.port}/v1/messages`
      const curl = await sh(`curl -sS -N --cacert "$SSL_CERT_FILE" --capath /nonexistent "${url}" -H "Authorization: Bearer $TOOL_KEY" -H 'content-type: application/json' -d '${MESSAGE}'`)
      expect(curl.exit_code, curl.stderr).to.equal(0)
      expect(curl.stdout, curl.stdout).to.contain(FAKE_COMPLETION)
      const node = await test!.client.run(sandboxId, {argv: ['node', '-e', NODE_CLIENT, String(tlsApi!.port), MESSAGE], env: {}})
      expect(node.stdout, node.stderr).to.contain(FAKE_COMPLETION)
      expect(tlsApi!.requests.map((request) => request.headers.authorization)).to.deep.equal([`Bearer ${INTERCEPTED_KEY}`, `Bearer ${INTERCEPTED_KEY}`])
    })

    it('keeps serving both after the daemon restarts (the forwarder inside and the CA kept), with the same phantoms', async () => {
      const before = (await sh('printf "%s %s" "$ANTHROPIC_AUTH_TOKEN" "$TOOL_KEY"')).stdout
      await test!.daemon.close()
      test = await startDaemon()
      expect((await sh('printf "%s %s" "$ANTHROPIC_AUTH_TOKEN" "$TOOL_KEY"')).stdout).to.equal(before)
      api!.requests.length = 0
      tlsApi!.requests.length = 0
      const calls = await sh(`curl -sS "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_AUTH_TOKEN" -d '${MESSAGE}' && curl -sS "https://api.test:${tlsApi!.port}/v1/messages" -H "Authorization: Bearer $TOOL_KEY" -d '${MESSAGE}'`)
      expect(calls.exit_code, calls.stderr).to.equal(0)
      expect(api!.requests.map((request) => request.headers['x-api-key'])).to.deep.equal([REAL_KEY])
      expect(tlsApi!.requests.map((request) => request.headers.authorization)).to.deep.equal([`Bearer ${INTERCEPTED_KEY}`])
    })
  })
}
