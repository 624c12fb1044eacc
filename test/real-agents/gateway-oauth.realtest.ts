import {expect} from 'chai'
import {randomInt} from 'node:crypto'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {GrantedLogin} from '../../src/credentials/wire.js'
import {systemResolver} from '../../src/egress/addresses.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import {FAKE_COMPLETION, FakeModelApi, testTls} from '../credentials/fake-apis.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

const CLAUDE = JSON.parse(await readFile(new URL('../../plugins/agent-claude/package.json', import.meta.url), 'utf8')) as {
  cleanroom: {agent: {network: {host: string; ports: number[]}[]; env: Record<string, string>; gateway: {logins: Omit<GrantedLogin, 'host_file'>[]}}}
}

/**
 * Claude Code for real, signed in with a subscription on the host: the
 * sandbox gets ~/.claude/.credentials.json with phantoms, and the gateway
 * intercepts api.anthropic.com and platform.claude.com with the sandbox's own
 * CA (Claude Code's Bun runtime must trust it through NODE_EXTRA_CA_CERTS).
 * Both names lead to a fake on a loopback address of its own; with the host's
 * access token expired, Claude refreshes through the gateway's single refresher.
 * Runs as root (the fake listens on port 443), with a daemon in this process
 * so its resolver can send those names to the fake; claude comes from npm.
 */
describe('real claude through the credential gateway: a subscription login on the host, TLS interception', function () {
  this.timeout(300_000)
  const dirs = tempDirs('cleanroom-gateway-oauth-')
  let dir = ''
  let bwrapBefore = new Set<number>()
  let test: TestDaemon
  let api: FakeModelApi
  const address = `127.${randomInt(1, 255)}.${randomInt(1, 255)}.${randomInt(2, 255)}`

  before(async () => {
    expect(process.getuid?.(), 'this test listens on port 443 and must run as root').to.equal(0)
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    const tls = testTls(['api.anthropic.com', 'platform.claude.com'])
    api = await FakeModelApi.start(tls, {host: address, port: 443})
    const resolver = async (host: string) => (host === 'api.anthropic.com' || host === 'platform.claude.com' ? [address] : systemResolver(host))
    test = await startTestDaemon(join(dir, 'daemon'), resolver, {upstreamCa: [tls.ca]})
  })

  after(async () => {
    await test?.daemon.close({shutdownSandboxes: true})
    await api?.close()
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })

  it('claude -p answers with the fake\'s completion, refreshing its expired token once through the gateway; the host file gets the new tokens, the sandbox only phantoms', async () => {
    const hostFile = join(dir, 'home/.claude/.credentials.json')
    await mkdir(join(hostFile, '..'), {recursive: true})
    const first = api.login({access: 'sk-ant-oat01-', refresh: 'sk-ant-ort01-'})
    await writeFile(hostFile, JSON.stringify({claudeAiOauth: {accessToken: first.access, refreshToken: first.refresh, expiresAt: Date.now() - 60_000, scopes: ['user:inference', 'user:profile'], subscriptionType: 'max'}}), {mode: 0o600})
    const agent = CLAUDE.cleanroom.agent
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [...agent.network, {host: address, ports: [443]}], deny: []})
    const id = (await test.client.createSandbox({policy, workspace_source: null})).sandbox_id
    const summary = await test.client.grantCredentials(id, {routes: [], logins: [{...agent.gateway.logins[0]!, host_file: hostFile}], write_back: true})
    expect(summary.logins[0]).to.include({state: 'in use'})

    const run = await test.client.run(id, {argv: ['sh', '-lc', 'npm exec --yes --package @anthropic-ai/claude-code@latest -- claude -p "Say hello." </dev/null'], env: agent.env})
    expect(run.exit_code, run.stderr).to.equal(0)
    expect(run.stdout).to.contain(FAKE_COMPLETION)

    const refreshes = api.requests.filter((request) => request.url.startsWith('/v1/oauth/token'))
    expect(refreshes.length, 'one refresh reached the provider').to.equal(1)
    expect(JSON.parse(refreshes[0]!.body)).to.include({grant_type: 'refresh_token', refresh_token: first.refresh})
    expect(api.oauth.reused).to.equal(0)
    const messages = api.requests.filter((request) => request.url.startsWith('/v1/messages'))
    expect(messages.length).to.be.at.least(1)
    for (const message of messages) expect(message.headers.authorization).to.equal(`Bearer ${api.oauth.access}`)

    const host = JSON.parse(await readFile(hostFile, 'utf8')) as {claudeAiOauth: {accessToken: string; refreshToken: string; expiresAt: number; subscriptionType: string}}
    expect(host.claudeAiOauth).to.include({accessToken: api.oauth.access, refreshToken: api.oauth.refresh, subscriptionType: 'max'})
    expect(host.claudeAiOauth.expiresAt).to.be.above(Date.now())
    const inside = await test.client.run(id, {argv: ['sh', '-c', 'cat ~/.claude/.credentials.json; cat /proc/[0-9]*/environ 2>/dev/null'], env: {}})
    for (const token of api.oauth.issued) expect(inside.stdout).not.to.contain(token)
    expect(inside.stdout).to.match(/"accessToken": ?"sk-ant-oat01-[A-Za-z0-9_-]{43}"/)
  })
})
