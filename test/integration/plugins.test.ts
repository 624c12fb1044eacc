import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {socketPathOf} from '../../src/client/connect.js'
import {runCli} from '../helpers/cli.js'
import {stopCliDaemon} from '../helpers/daemon.js'
import {packFixture, PLUGIN_FIXTURES, pluginEnv} from '../helpers/plugins.js'
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
  let notAPluginTarball: string

  before(async () => {
    home = await dirs.make()
    const packs = join(home, 'packs')
    tarball = await packFixture('agent-fake', packs)
    brokenTarball = await packFixture('agent-broken', packs)
    notAPluginTarball = await packFixture('not-a-plugin', packs)
    // Offline: a zero-dependency tarball must install without the registry.
    env = pluginEnv(home)
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
    expect(shown).to.deep.equal([
      `cleanroom: Fetching plugin file://${tarball}... done`,
      'cleanroom: plugin cleanroom-agent-fake@1.2.3 adds agent "fake"',
      "cleanroom:   fake may reach: api.fake.example:443 (the fake agent's API)",
      'cleanroom:   fake copies into its sandbox: ~/.fake/token -> ~/.fake/token',
      'cleanroom: Installing plugin cleanroom-agent-fake@1.2.3... installed v1.2.3',
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

  it('installs it again from where it came from with plugins update, showing the preview again', async () => {
    const update = await runCli(['plugins', 'update'], {env})
    expect(update.exitCode, update.stderr).to.equal(0)
    expect(update.stderr).to.contain(`cleanroom: Fetching plugin file://${tarball}... done`)
    expect(update.stderr).to.contain('cleanroom: plugin cleanroom-agent-fake@1.2.3 adds agent "fake"')
    expect(update.stderr).to.contain('cleanroom: Installing plugin cleanroom-agent-fake@1.2.3... installed v1.2.3')
  })

  it('says which package is no oclif plugin and what it lacks, in its own words', async () => {
    const install = await runCli(['plugins', 'install', `file://${notAPluginTarball}`], {env})
    expect(install.exitCode).to.equal(2)
    expect(install.stderr).to.contain(
      `Error: cleanroom-not-a-plugin@1.0.0 (file://${notAPluginTarball}) is not a cleanroom agent plugin: its package.json has no "oclif" key (an agent plugin needs "oclif": {} next to its "cleanroom": {"agent": {…}} block)`,
    )
    expect(install.stderr).not.to.contain('contact the CLI developer')
  })

  it('uninstalls it, and the agent is gone', async () => {
    const uninstall = await runCli(['plugins', 'uninstall', 'cleanroom-agent-fake'], {env})
    expect(uninstall.exitCode, uninstall.stderr).to.equal(0)
    expect((await listAgents()).map((agent) => agent.name)).not.to.include('fake')
  })

  it('links a plugin directory after the same preview, and refuses a linked plugin with code the same way', async () => {
    const link = await runCli(['plugins', 'link', join(PLUGIN_FIXTURES, 'agent-fake')], {env})
    expect(link.exitCode, link.stderr).to.equal(0)
    expect(link.stderr.split('\n').filter((line) => line.startsWith('cleanroom: '))).to.deep.equal([
      'cleanroom: plugin cleanroom-agent-fake@1.2.3 adds agent "fake"',
      "cleanroom:   fake may reach: api.fake.example:443 (the fake agent's API)",
      'cleanroom:   fake copies into its sandbox: ~/.fake/token -> ~/.fake/token',
      'cleanroom: linked cleanroom-agent-fake@1.2.3',
    ])
    expect((await listAgents()).find((agent) => agent.name === 'fake')).to.deep.include({source: 'linked'})
    expect((await runCli(['plugins', 'uninstall', 'cleanroom-agent-fake'], {env})).exitCode).to.equal(0)

    const hooked = await runCli(['plugins', 'link', join(PLUGIN_FIXTURES, 'agent-hooked')], {env})
    expect(hooked.exitCode).to.equal(2)
    expect(hooked.stderr).to.contain(`Try this: If you trust its code to run with your user's rights on every cleanroom command: cleanroom plugins link ${join(PLUGIN_FIXTURES, 'agent-hooked')} --allow-code`)
  })

  it("runs cleanroom's plugins install, link, update and reset, not plugin-plugins' (the CLI's own commands win), also as plugins add", async () => {
    for (const command of [['plugins', 'install'], ['plugins', 'add'], ['plugins', 'link'], ['plugins', 'update']]) {
      const help = await runCli([...command, '--help'], {env})
      expect(help.exitCode, command.join(' ')).to.equal(0)
      expect(help.stdout, command.join(' ')).to.contain('--allow-code')
    }
    const reset = await runCli(['plugins', 'reset', '--reinstall'], {env})
    expect(reset.exitCode).to.equal(2)
    expect(reset.stderr).to.contain('cleanroom plugins reset has no --reinstall')
  })
})
