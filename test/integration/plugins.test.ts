import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {socketPathOf} from '../../src/client/connect.js'
import {isolatedEnv, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {stopCliDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

interface ListedAgent {
  name: string
  source: string
  source_detail: string
  command: string
}

describe('third-party agent plugin: npm pack, plugins install, agent list, run, uninstall', function () {
  this.timeout(120_000)
  const dirs = tempDirs()
  let env: Record<string, string>
  let tarball: string
  let home: string
  let brokenTarball: string

  before(async () => {
    home = await dirs.make()
    const packs = join(home, 'packs')
    await mkdir(packs)
    const pack = async (fixture: string) => {
      const packed = await execa('npm', ['pack', '--json', '--pack-destination', packs], {cwd: join(PROJECT_ROOT, 'test/fixtures/plugins', fixture)})
      const [info] = JSON.parse(packed.stdout) as {filename: string}[]
      return join(packs, info!.filename)
    }
    tarball = await pack('agent-fake')
    brokenTarball = await pack('agent-broken')
    // Offline: a zero-dependency tarball must install without the registry.
    env = {...isolatedEnv(home), npm_config_offline: 'true', npm_config_cache: join(home, '.npm')}
  })

  after(async () => {
    await stopCliDaemon(socketPathOf(undefined, env))
    await dirs.cleanup()
  })

  async function listAgents(): Promise<ListedAgent[]> {
    const result = await runCli(['agent', 'list', '--json'], {env})
    expect(result.exitCode, result.stderr).to.equal(0)
    return JSON.parse(result.stdout) as ListedAgent[]
  }

  it('installs the packed plugin from file://, first showing what its agent may reach and copy, and lists its agent as a plugin', async () => {
    const install = await runCli(['plugins', 'install', `file://${tarball}`], {env})
    expect(install.exitCode, install.stderr).to.equal(0)
    const shown = install.stderr.split('\n').filter((line) => line.startsWith('cleanroom: '))
    expect(shown.slice(0, 4)).to.deep.equal([
      'cleanroom: plugin cleanroom-agent-fake@1.2.3 adds agent "fake"',
      "cleanroom:   fake may reach: api.fake.example:443 (the fake agent's API)",
      'cleanroom:   fake copies from your home: ~/.fake/token -> ~/.fake/token',
      `cleanroom: Installing plugin file://${tarball}... installed v1.2.3`,
    ])

    const fake = (await listAgents()).find((agent) => agent.name === 'fake')
    expect(fake).to.deep.include({source: 'plugin', source_detail: 'installed plugin cleanroom-agent-fake@1.2.3', command: "printf 'fake agent: %s\\n'"})
  })

  it('shows the installed agent in agent --help', async () => {
    const help = await runCli(['agent', '--help'], {env})
    expect(help.exitCode, help.stderr).to.equal(0)
    expect(help.stdout).to.match(/^ {2}fake +plugin +A fake agent for tests$/m)
  })

  it('runs the installed agent in a sandbox of a repository', async () => {
    const repo = join(home, 'repo')
    await mkdir(repo)
    await execa('git', ['init', '-q', repo])
    const run = await runCli(['agent', 'fake', '--', 'hello there'], {env, cwd: repo})
    expect(run.exitCode, run.stderr).to.equal(0)
    expect(run.stdout).to.equal('fake agent: hello there')
    expect(run.stderr).to.contain('fake may reach: api.fake.example:443')
  })

  it('warns, naming the plugin, when its agent spec is invalid, and installs it anyway; the registry skips it', async () => {
    const install = await runCli(['plugins', 'install', `file://${brokenTarball}`], {env})
    expect(install.exitCode, install.stderr).to.equal(0)
    const oneLine = install.stderr.replaceAll(/\s*\n\s*(›\s*)?/g, ' ')
    expect(oneLine).to.contain('plugin cleanroom-agent-broken@0.0.1 declares an invalid agent')
    expect(oneLine).to.contain('cleanroom.agent.network[0].ports[0]: 70000 is not a port (1-65535)')
    expect(oneLine).to.contain('installed v0.0.1')
    expect((await listAgents()).map((agent) => agent.name)).not.to.include('broken')
    const uninstall = await runCli(['plugins', 'uninstall', 'cleanroom-agent-broken'], {env})
    expect(uninstall.exitCode, uninstall.stderr).to.equal(0)
  })

  it('uninstalls it, and the agent is gone', async () => {
    const uninstall = await runCli(['plugins', 'uninstall', 'cleanroom-agent-fake'], {env})
    expect(uninstall.exitCode, uninstall.stderr).to.equal(0)
    expect((await listAgents()).map((agent) => agent.name)).not.to.include('fake')
  })
})
