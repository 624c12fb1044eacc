import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import {DEFAULT_RUNTIME_CONFIG, type RuntimeConfig} from '../../src/config/schema.js'
import type {GrantRequest} from '../../src/credentials/wire.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {eventually} from '../helpers/daemon-process.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {FAKE_COMPLETION, FakeModelApi} from './fake-apis.js'

const REAL_KEY = `sk-ant-api03-REAL-${'a'.repeat(40)}`

function route(port: number): GrantRequest['routes'][number] {
  return {
    name: 'anthropic',
    upstream: `http://127.0.0.1:${port}`,
    header: 'x-api-key',
    format: '{}',
    secret: [{provided: REAL_KEY, from: 'ANTHROPIC_API_KEY from your environment'}],
    env: {ANTHROPIC_BASE_URL: '{url}', ANTHROPIC_AUTH_TOKEN: '{phantom}', ANTHROPIC_API_KEY: ''},
  }
}

const CALL = `curl -sS -m 20 -i "$ANTHROPIC_BASE_URL/v1/messages" -H "x-api-key: $ANTHROPIC_AUTH_TOKEN" -H 'content-type: application/json' -d '{"stream":true}'`

describe('credential gateway: a sandbox whose egress audit log cannot be written', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-gateway-full-')
  let dir: string
  let stateDir: string
  let filler: string
  let test: TestDaemon | undefined
  let api: FakeModelApi | undefined
  let bwrapBefore: Set<number>

  beforeEach(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    stateDir = join(dir, 'state')
    filler = join(stateDir, 'filler')
    await mkdir(stateDir)
    // A small file system of its own: filling it fills nothing else.
    const mounted = await execa('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', stateDir], {reject: false})
    if (mounted.exitCode !== 0) throw new Error(`this test mounts a tmpfs and needs root for it: ${mounted.stderr}`)
    api = await FakeModelApi.start()
  })

  afterEach(async () => {
    await rm(filler, {force: true})
    await test?.daemon.close({shutdownSandboxes: true})
    test = undefined
    await api?.close()
    await execa('umount', ['-l', stateDir], {reject: false})
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this test still running').to.deep.equal([])
    await dirs.cleanup()
  })

  const granted = async (config: Partial<RuntimeConfig> = {}): Promise<string> => {
    test = await startTestDaemon(dir, undefined, {stateDir, config})
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [api!.port]}], deny: []})
    const {sandbox_id: id} = await test.client.createSandbox({policy, workspace_source: null})
    await test.client.grantCredentials(id, {routes: [route(api!.port)], logins: [], write_back: true})
    await execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], {reject: false})
    return id
  }

  it('refuses its route requests with audit_unavailable, and nothing reaches the upstream', async () => {
    const id = await granted()
    const call = await test!.client.run(id, {argv: ['sh', '-c', CALL], env: {}})
    expect(call.exit_code, call.stderr).to.equal(0)
    expect(call.stdout).to.match(/^HTTP\/1\.1 403 /)
    expect(call.stdout).to.match(/\r\nx-cleanroom-reason: audit_unavailable\r\n/i)
    const body = JSON.parse(call.stdout.slice(call.stdout.indexOf('\r\n\r\n') + 4)) as {error: {code: string; message: string}}
    expect(body.error.code).to.equal('audit_unavailable')
    expect(body.error.message).to.match(/^cleanroom credential gateway: audit_unavailable: 127\.0\.0\.1:\d+ was not tried: the sandbox's egress audit log cannot be written \(.+\), and the runtime config refuses connections that cannot be logged \(egress\.audit_failure: deny\)$/)
    expect(api!.requests).to.deep.equal([])
    await rm(filler)
    expect((await test!.client.removeSandbox(id)).status).to.equal('stopped')
  })

  it('sends them on unlogged when the runtime config says egress.audit_failure: allow', async () => {
    const id = await granted({egress: {...DEFAULT_RUNTIME_CONFIG.egress, audit_failure: 'allow'}})
    const call = await test!.client.run(id, {argv: ['sh', '-c', CALL], env: {}})
    expect(call.exit_code, call.stderr).to.equal(0)
    expect(call.stdout).to.match(/^HTTP\/1\.1 200 /)
    expect(call.stdout).to.contain(FAKE_COMPLETION)
    expect(api!.requests.map((request) => request.headers['x-api-key'])).to.deep.equal([REAL_KEY])
    await eventually('the audit failure to be reported', async () => (await test!.client.inspectSandbox(id)).egress?.audit_error !== undefined)
    await rm(filler)
    expect((await test!.client.removeSandbox(id)).status).to.equal('stopped')
  })
})
