import {expect} from 'chai'
import {lstat, readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cacheLayout, indexKey, type PackageWanted} from '../../src/agents/cache/layout.js'
import {buildAgentScript} from '../../src/agents/script.js'
import type {AgentPackageBody} from '../../src/client/client.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {sandboxPids, leftoverSandboxes, mountsMentioning, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {FakeNpmRegistry} from '../helpers/npm-registry.js'
import {tempDirs} from '../helpers/tmp.js'

describe('the shared agent cache (daemon, real sandboxes, an npm registry on loopback)', function () {
  this.timeout(180_000)
  const dirs = tempDirs('cleanroom-agent-cache-')
  let dir: string
  let test: TestDaemon
  let registry: FakeNpmRegistry
  let bwrapBefore: Set<number>

  before(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    registry = await FakeNpmRegistry.start()
    await registry.publish('1.0.0')
    test = await startTestDaemon(dir)
  })

  after(async () => {
    await test.daemon.close({shutdownSandboxes: true})
    await registry.close()
    expect(await leftoverSandboxes(bwrapBefore, dir), 'sandboxes of this suite still running').to.deep.equal([])
    expect(await mountsMentioning(dir)).to.deep.equal([])
    await dirs.cleanup()
  })

  /** A resolve request for fake-agent; `extra` npm settings make a cache key of its own. */
  function request(options: {wanted?: string; update?: boolean; network?: AgentPackageBody['network']; extra?: Record<string, string>} = {}): AgentPackageBody {
    return {
      package: 'fake-agent',
      wanted: options.wanted ?? 'latest',
      network: options.network ?? [registry.networkNeed],
      npm_config: {...registry.npmEnv, ...options.extra},
      update: options.update ?? false,
    }
  }

  const layout = () => cacheLayout(test.agentCacheDir)
  const keyOf = (body: AgentPackageBody) => indexKey({package: body.package, wanted: body.wanted, npmConfig: body.npm_config} satisfies PackageWanted)

  /** Makes the registry check of a key look a day and a minute old. */
  async function age(body: AgentPackageBody): Promise<void> {
    const path = join(layout().index, `${keyOf(body)}.json`)
    const record = JSON.parse(await readFile(path, 'utf8')) as {checked_at: string}
    record.checked_at = new Date(Date.now() - 86_460_000).toISOString()
    await writeFile(path, JSON.stringify(record))
  }

  async function sandboxesLeft(): Promise<string[]> {
    return (await test.client.listSandboxes(false)).map((sandbox) => sandbox.sandbox_id)
  }

  it('fetches a release once, with npm in a sandbox of its own, into a read-only entry named by its content', async () => {
    const answer = await test.client.resolveAgentPackage(request())
    expect(answer).to.deep.include({package: 'fake-agent', wanted: 'latest', version: '1.0.0', action: 'fetched'})
    expect(answer.entry).to.match(/^[0-9a-f]{64}$/)
    expect(registry.tarballFetches()).to.equal(1)
    expect(test.logs.some((line) => /agent cache: checking fake-agent@latest in sandbox cr_\w+/.test(line))).to.equal(true)
    expect(await sandboxesLeft(), 'the fetch sandbox is removed').to.deep.equal([])

    const entry = join(layout().entries, answer.entry)
    const script = join(entry, 'node_modules/fake-agent/bin/fake-agent.sh')
    expect((await lstat(entry)).mode & 0o777).to.equal(0o555)
    expect((await lstat(script)).mode & 0o777).to.equal(0o555)
    expect((await lstat(join(entry, 'node_modules/fake-agent/package.json'))).mode & 0o777).to.equal(0o444)
    expect((await lstat(join(entry, 'node_modules/.bin/fake-agent'))).isSymbolicLink()).to.equal(true)
    // The install script hard-linked the program over the bin: the entry has it as a file of its own.
    expect(await readFile(script, 'utf8')).to.contain('echo "fake-agent 1.0.0:"')
    expect((await lstat(script)).nlink).to.equal(1)
    expect(JSON.parse(await readFile(`${entry}.json`, 'utf8'))).to.deep.include({package: 'fake-agent', version: '1.0.0'})
  })

  it('answers from the cache within a day, without asking the registry', async () => {
    const before = registry.requests.length
    const answer = await test.client.resolveAgentPackage(request())
    expect(answer).to.deep.include({version: '1.0.0', action: 'cached'})
    expect(registry.requests.length).to.equal(before)
  })

  it('asks the registry once for concurrent starts when the day is over, and once only', async () => {
    const body = request()
    await age(body)
    const packuments = registry.packumentFetches()
    const answers = await Promise.all([1, 2, 3].map(() => test.client.resolveAgentPackage(body)))
    expect(registry.packumentFetches() - packuments).to.equal(1)
    expect(new Set(answers.map((answer) => answer.entry)).size).to.equal(1)
    expect(answers.map((answer) => answer.action)).to.deep.equal(['checked', 'checked', 'checked'])
  })

  it('fetches a release once for concurrent first starts', async () => {
    const body = request({extra: {npm_config_loglevel: 'warn'}})
    const tarballs = registry.tarballFetches()
    const answers = await Promise.all([1, 2, 3].map(() => test.client.resolveAgentPackage(body)))
    expect(registry.tarballFetches() - tarballs).to.equal(1)
    expect(answers.map((answer) => answer.action)).to.deep.equal(['fetched', 'fetched', 'fetched'])
    // The same release is the same content: one entry for both keys.
    expect(answers[0]!.entry).to.equal((await test.client.resolveAgentPackage(request())).entry)
  })

  it('asks now with update, and fetches a new latest', async () => {
    await registry.publish('1.1.0')
    const cached = await test.client.resolveAgentPackage(request())
    expect(cached).to.deep.include({version: '1.0.0', action: 'cached'})
    const updated = await test.client.resolveAgentPackage(request({update: true}))
    expect(updated).to.deep.include({version: '1.1.0', action: 'fetched'})
    expect(updated.entry).not.to.equal(cached.entry)
    expect((await readdir(layout().entries)).filter((name) => !name.endsWith('.json'))).to.include.members([cached.entry, updated.entry])
  })

  it('never checks a pinned exact version again', async () => {
    const body = request({wanted: '1.0.0'})
    const pinned = await test.client.resolveAgentPackage(body)
    expect(pinned).to.deep.include({version: '1.0.0', action: 'fetched'})
    await age(body)
    const before = registry.requests.length
    expect(await test.client.resolveAgentPackage(body)).to.deep.include({version: '1.0.0', action: 'cached', entry: pinned.entry})
    expect(registry.requests.length).to.equal(before)
  })

  it("fails with npm's reason when the agent's network does not reach the registry", async () => {
    const error = await test.client.resolveAgentPackage(request({network: [], extra: {npm_config_loglevel: 'error'}})).then(
      () => undefined,
      (caught: unknown) => caught,
    )
    expect(error).to.be.instanceOf(CleanroomError)
    expect((error as CleanroomError).code).to.equal('agent_install_failed')
    expect((error as CleanroomError).message).to.match(/^npm view of fake-agent exited with 1 in the agent cache's fetch sandbox:\n.*403/s)
    expect((error as CleanroomError).suggestions.join('\n')).to.contain('the npm registry must be one of them')
    expect(await sandboxesLeft()).to.deep.equal([])
  })

  it('runs the release it has for another day, with a warning, when the registry cannot be asked', async () => {
    const body = request()
    const before = await test.client.resolveAgentPackage(body)
    await age(body)
    const answer = await test.client.resolveAgentPackage({...body, network: []})
    expect(answer).to.deep.include({entry: before.entry, action: 'checked'})
    expect(answer.warning).to.match(/^could not ask the registry for fake-agent@latest \(npm view of fake-agent exited with 1 .*\): using 1\.1\.0, cached before$/)
    expect(await test.client.resolveAgentPackage(body)).to.deep.include({action: 'cached'})
  })

  it('mounts the entry read-only at /cleanroom/agent, where the agent script runs it, and shows nothing else of the cache', async () => {
    const {entry} = await test.client.resolveAgentPackage(request())
    const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null, agent_package: entry})
    try {
      expect(sandbox.agent_package).to.deep.equal({entry, package: 'fake-agent', version: '1.1.0'})
      const sh = async (script: string) => test.client.run(sandbox.sandbox_id, {argv: ['sh', '-c', script], env: {}})
      expect((await sh('ls -A /cleanroom /cleanroom/agent')).stdout).to.equal('/cleanroom:\nagent\n\n/cleanroom/agent:\nnode_modules\n')
      const write = await sh('touch /cleanroom/agent/x; rm -f /cleanroom/agent/node_modules/fake-agent/package.json; chmod u+w /cleanroom/agent; mount -o remount,rw /cleanroom/agent')
      expect(write.stderr).to.contain("touch: cannot touch '/cleanroom/agent/x': Read-only file system")
      expect(write.stderr).to.contain('Read-only file system')
      expect(write.exit_code).not.to.equal(0)
      expect((await sh('grep " /cleanroom/agent " /proc/self/mountinfo')).stdout).to.match(/ \/cleanroom\/agent ro,nosuid,nodev/)
      expect((await sh('stat -c "%U %a" /cleanroom/agent/node_modules/fake-agent/package.json')).stdout).to.equal('nobody 444\n')

      const script = buildAgentScript({name: 'fake', command: 'fake-agent', test: 'true', package: 'fake-agent'}, ['--', 'hello', 'world'])
      const ran = await test.client.run(sandbox.sandbox_id, {argv: ['sh', '-lc', script], env: {}})
      expect(ran.stdout).to.equal('fake-agent 1.1.0: hello world\n')
      expect(ran.stderr).to.equal('')
    } finally {
      await test.client.removeSandbox(sandbox.sandbox_id)
    }
  })

  it('refuses an agent_package that is not an entry of its cache', async () => {
    for (const entry of ['f'.repeat(64), '../../../etc']) {
      const error = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null, agent_package: entry as string}).then(
        () => undefined,
        (caught: unknown) => caught,
      )
      expect((error as CleanroomError).code, String(entry)).to.equal('bad_request')
      expect((error as CleanroomError).message).to.contain('is not an entry of the agent cache')
    }
    expect(await sandboxesLeft()).to.deep.equal([])
  })
})
