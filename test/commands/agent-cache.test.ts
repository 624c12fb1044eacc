import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {PublicSandbox} from '../../src/client/client.js'
import type {DiskUsageReport, PruneReport} from '../../src/daemon/system/index.js'
import {BACKENDS, requireBackend} from '../conformance/backends.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'
import {FakeNpmRegistry} from '../helpers/npm-registry.js'

describe('cleanroom agent with the shared agent cache (CLI, real sandboxes, an npm registry on loopback)', function () {
  this.timeout(120_000)
  let registry: FakeNpmRegistry
  const config = async (home: string, version?: string) => {
    const need = registry.networkNeed
    const lines = [
      'agents:',
      '  fake:',
      '    command: fake-agent',
      '    package: fake-agent',
      ...(version ? [`    version: "${version}"`] : []),
      '    network:',
      `      - {host: ${need.host}, ports: [${need.ports[0]}]}`,
      '    env:',
      `      npm_config_registry: ${registry.url}`,
    ]
    await mkdir(join(home, '.config/cleanroom'), {recursive: true})
    await writeFile(join(home, '.config/cleanroom/config.yaml'), `${lines.join('\n')}\n`)
  }
  const suite = cliRepoSuite('cleanroom-agent-cache-', async ({home}) => {
    registry = await FakeNpmRegistry.start()
    await registry.publish('1.0.0')
    await config(home)
  })
  after(() => registry.close())
  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]
  let first = ''

  it('fetches the package once for the machine, then starts it in new sandboxes from the cache', async () => {
    const fetched = await suite.cli(['agent', 'fake', '--version'])
    expect(fetched.exitCode, fetched.stderr).to.equal(0)
    expect(fetched.stdout).to.equal('fake-agent 1.0.0: --version')
    expect(fetched.stderr).to.contain('cleanroom: getting fake-agent@latest for the agent cache')
    expect(fetched.stderr).to.contain('cleanroom: fake-agent 1.0.0 is in the agent cache now')
    first = sandboxOf(fetched.stderr)!
    const requests = registry.requests.length

    const again = await suite.cli(['agent', 'fake', 'x'])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(again.stdout).to.equal('fake-agent 1.0.0: x')
    expect(again.stderr).not.to.contain('agent cache')
    expect(again.stderr, 'the cached package runs, not npm in the sandbox').not.to.contain('installing')
    expect(registry.requests.length, 'the registry is not asked again the same day').to.equal(requests)
    const inspect = await suite.cli(['sandbox', 'inspect', sandboxOf(again.stderr)!])
    expect(inspect.stdout).to.match(/^agent: +fake-agent 1\.0\.0 at \/cleanroom\/agent, read-only \(agent cache entry [0-9a-f]{12}\)$/m)
  })

  for (const backend of BACKENDS) {
    it(`starts the cached package read-only in a sandbox of --backend ${backend}`, async () => {
      await requireBackend(backend)
      const ran = await suite.cli(['agent', '--backend', backend, 'fake', backend])
      expect(ran.exitCode, ran.stderr).to.equal(0)
      expect(ran.stdout).to.equal(`fake-agent 1.0.0: ${backend}`)
      expect(ran.stderr, 'the cached package runs, not npm in the sandbox').not.to.contain('installing')
      const id = sandboxOf(ran.stderr)!
      const inspect = JSON.parse((await suite.cli(['sandbox', 'inspect', id, '--json'])).stdout) as PublicSandbox
      expect(inspect.backend).to.equal(backend)
      const write = await suite.cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'touch /cleanroom/agent/x 2>/dev/null; echo $?; grep " /cleanroom/agent " /proc/mounts'])
      expect(write.stdout, write.stdout).to.match(/^1\n\S+ \/cleanroom\/agent \S+ ro[, ]/)
      await suite.cli(['sandbox', 'rm', id])
    })
  }

  it('checks now with --update and fetches the new release; a kept sandbox keeps its own', async () => {
    await registry.publish('1.1.0')
    const updated = await suite.cli(['agent', '--update', 'fake', 'y'])
    expect(updated.exitCode, updated.stderr).to.equal(0)
    expect(updated.stderr).to.contain('cleanroom: fake-agent 1.1.0 is in the agent cache now')
    expect(updated.stdout).to.equal('fake-agent 1.1.0: y')
    const kept = await suite.cli(['agent', '--sandbox-id', first, 'fake', 'z'])
    expect(kept.stdout).to.equal('fake-agent 1.0.0: z')
    const checked = await suite.cli(['agent', '--update', 'fake'])
    expect(checked.stderr).to.contain('cleanroom: fake-agent@latest is 1.1.0, the release cached before')
  })

  it('runs the version the runtime config pins', async () => {
    await config(suite.home, '1.0.0')
    const pinned = await suite.cli(['agent', 'fake', 'p'])
    expect(pinned.exitCode, pinned.stderr).to.equal(0)
    expect(pinned.stdout).to.equal('fake-agent 1.0.0: p')
    await config(suite.home)
  })

  it('is one more kind of cache in system df and prune, which never removes an entry a sandbox has mounted', async () => {
    const json = async <T>(args: string[]): Promise<T> => {
      const result = await suite.cli([...args, '--json'])
      expect(result.exitCode, result.stderr).to.equal(0)
      return JSON.parse(result.stdout) as T
    }
    const agents = (await json<DiskUsageReport>(['system', 'df'])).caches.filter((cache) => cache.kind === 'agents')
    expect(agents.map((cache) => `${cache.holds} ${cache.sandbox_id} ${cache.in_use}`).sort()).to.deep.equal(['fake-agent 1.0.0 null true', 'fake-agent 1.1.0 null true'])
    expect(agents.every((cache) => cache.bytes > 0 && cache.path.startsWith(join(suite.home, '.cache/cleanroom/agents/entries/')))).to.equal(true)
    expect((await suite.cli(['system', 'df'])).stdout).to.match(/^agents +\(host\) +\S+ \(fake-agent 1\.1\.0\) /m)

    for (const sandbox of await json<PublicSandbox[]>(['sandbox', 'ls'])) {
      if (sandbox.agent_package?.version === '1.1.0') await suite.cli(['sandbox', 'rm', sandbox.sandbox_id])
    }
    const pruned = await json<PruneReport>(['system', 'prune', '--older-than', '0'])
    const agentItems = (items: PruneReport['removed']) => items.flatMap((item) => (item.type === 'cache' && item.kind === 'agents' ? [item.path] : []))
    expect(agentItems(pruned.removed)).to.deep.equal([agents.find((cache) => cache.holds === 'fake-agent 1.1.0')!.path])
    expect(pruned.kept.filter((item) => item.type === 'cache' && item.kind === 'agents').map((item) => item.reason)).to.deep.equal(['a sandbox has it mounted'])

    const again = await suite.cli(['agent', 'fake', 'q'])
    expect(again.exitCode, again.stderr).to.equal(0)
    expect(again.stderr, 'a pruned release is fetched again').to.contain('cleanroom: fake-agent 1.1.0 is in the agent cache now')
    expect(again.stdout).to.equal('fake-agent 1.1.0: q')
  })
})
