import {expect} from 'chai'
import {execa} from 'execa'
import {copyFile, mkdir, readFile, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {PROJECT_ROOT, runCli} from '../../helpers/cli.js'
import {markersIn, packBundledFixture, packDirectory, packFixture, packManifestFixture, PLUGIN_FIXTURES, pluginEnv, rawTar, writeTarball} from '../../helpers/plugins.js'
import {tempDirs} from '../../helpers/tmp.js'

interface ListedAgent {
  name: string
  source: string
  source_detail: string
  warnings: string[]
}

/** Plugins are checked on the host before any sandbox exists: these cases run once, not per backend. */
export function agentPlugins(): void {
  describe('agent plugins', function () {
    this.timeout(180_000)
    const dirs = tempDirs()
    let packs: string
    let tarballs: Record<string, string>
    let home: string
    let env: Record<string, string>

    before(async () => {
      packs = await dirs.make()
      tarballs = {}
      for (const fixture of ['agent-fake', 'agent-scripts', 'agent-hooked', 'agent-codex-override']) tarballs[fixture] = await packFixture(fixture, packs)
      tarballs['agent-bundled'] = await packBundledFixture(await dirs.make(), packs)
      tarballs['agent-manifest'] = await packManifestFixture(await dirs.make(), packs)
    })

    after(() => dirs.cleanup())

    // Each case installs into a home and plugin data dir of its own.
    beforeEach(async () => {
      home = await dirs.make()
      env = pluginEnv(home)
    })

    const install = (fixtureOrPath: string, ...flags: string[]) => runCli(['plugins', 'install', `file://${tarballs[fixtureOrPath] ?? fixtureOrPath}`, ...flags], {env})

    async function listAgents(): Promise<{agents: ListedAgent[]; stderr: string}> {
      const result = await runCli(['agent', 'list', '--json'], {env})
      expect(result.exitCode, result.stderr).to.equal(0)
      return {agents: JSON.parse(result.stdout) as ListedAgent[], stderr: result.stderr}
    }

    async function installedPlugins(): Promise<string[]> {
      const state = JSON.parse(await readFile(join(home, '.local/share/cleanroom/package.json'), 'utf8').catch(() => '{}')) as {oclif?: {plugins?: {name: string}[]}}
      return (state.oclif?.plugins ?? []).map((plugin) => plugin.name)
    }

    it("runs no install script of a plugin or of a dependency it bundles, and says which it did not run", async () => {
      const scripts = await install('agent-scripts')
      expect(scripts.exitCode, scripts.stderr).to.equal(0)
      expect(scripts.stderr).to.contain("cleanroom:   cleanroom-agent-scripts@1.0.0's install scripts are not run: preinstall, install, postinstall, prepare")
      const bundled = await install('agent-bundled', '--allow-code')
      expect(bundled.exitCode, bundled.stderr).to.equal(0)
      // From a directory, npm pack would run prepare; from a tarball, npm install the rest.
      const directory = await install(join(PLUGIN_FIXTURES, 'agent-scripts'))
      expect(directory.exitCode, directory.stderr).to.equal(0)
      expect(await installedPlugins()).to.deep.equal(['cleanroom-agent-bundled', 'cleanroom-agent-scripts'])
      expect(await readFile(join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-bundled/node_modules/scripted-dep/package.json'), 'utf8')).to.contain('script-ran-dependency-postinstall')
      expect(await markersIn(home)).to.deep.equal([])
    })

    it("runs no install script when plugin-plugins' own npm runs in the plugins directory either (plugins uninstall reinstalling a missing package)", async () => {
      expect((await install('agent-scripts')).exitCode).to.equal(0)
      expect((await install('agent-fake')).exitCode).to.equal(0)
      await rm(join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-scripts'), {recursive: true})
      const uninstall = await runCli(['plugins', 'uninstall', 'cleanroom-agent-fake'], {env})
      expect(uninstall.exitCode, uninstall.stderr).to.equal(0)
      expect(uninstall.stderr).to.contain('plugin cleanroom-agent-scripts is not loaded: cannot read its package.json')
      expect(await readFile(join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-scripts/package.json'), 'utf8')).to.contain('script-ran-postinstall')
      expect(await markersIn(home)).to.deep.equal([])
    })

    it('refuses a plugin with an oclif hook; with --allow-code its hook runs, on the next command', async () => {
      const refused = await install('agent-hooked')
      expect(refused.exitCode).to.equal(2)
      expect(refused.stderr).to.contain('Error: cleanroom-agent-hooked@1.0.0 is not data: it declares code that cleanroom would run (oclif.hooks (init))')
      expect(refused.stderr).to.contain(`--allow-code`)
      expect(await installedPlugins()).to.deep.equal([])
      expect((await listAgents()).agents.map((agent) => agent.name)).not.to.include('hooked')
      expect(await markersIn(home)).to.deep.equal([])

      const allowed = await install('agent-hooked', '--allow-code')
      expect(allowed.exitCode, allowed.stderr).to.equal(0)
      expect(allowed.stderr).to.contain('warning: cleanroom-agent-hooked@1.0.0 runs code in cleanroom: oclif.hooks (init)')
      expect((await listAgents()).agents.map((agent) => agent.name)).to.include('hooked')
      expect(await markersIn(home)).to.deep.equal(['hooked-plugin-ran'])
    })

    it('refuses a plugin whose package.json looks like data but which ships commands in oclif.manifest.json', async () => {
      const refused = await install('agent-manifest')
      expect(refused.exitCode).to.equal(2)
      expect(refused.stderr).to.contain('it declares code that cleanroom would run (oclif.manifest.json (commands oclif would load))')
      expect(await installedPlugins()).to.deep.equal([])
      expect((await runCli(['hello'], {env})).stderr).to.contain('command hello not found')
      expect(await markersIn(home)).to.deep.equal([])
    })

    it('refuses a tarball with two package.json files, or two entries for one path, before showing any of it', async () => {
      const innocent = JSON.stringify({name: 'cleanroom-agent-innocent', version: '1.0.0', oclif: {}, cleanroom: {agent: {name: 'innocent', command: 'innocent'}}})
      const evil = await readFile(join(PLUGIN_FIXTURES, 'agent-codex-override/package.json'), 'utf8')
      const twoDirectories = await writeTarball(join(packs, 'two-directories.tar'), [
        {name: 'package/package.json', content: innocent},
        {name: 'evil/package.json', content: evil.replace('cleanroom-agent-codex-override', 'cleanroom-agent-innocent')},
      ])
      const twice = await writeTarball(join(packs, 'twice.tar'), [
        {name: 'package/package.json', content: innocent},
        {name: 'package/package.json', content: evil.replace('cleanroom-agent-codex-override', 'cleanroom-agent-innocent')},
      ])
      for (const [tarball, why] of [
        [twoDirectories, 'it has more than one top-level directory ("package", "evil")'],
        [twice, 'it has two entries for package.json (the later one would replace the earlier when npm unpacks it)'],
      ] as const) {
        const refused = await install(tarball, '--replace', '--allow-code')
        expect(refused.exitCode, refused.stderr).to.equal(2)
        expect(refused.stderr).to.contain(`Error: file://${tarball} is refused: ${why}`)
        expect(refused.stderr).not.to.contain('adds agent')
      }
      expect(await installedPlugins()).to.deep.equal([])
      const codex = (await listAgents()).agents.find((agent) => agent.name === 'codex')
      expect(codex?.source_detail).to.equal('built-in plugin @cleanroom/agent-codex')
    })

    it('checks after npm unpacked it that the package.json is the one shown, and removes what npm installed when it is not', async () => {
      // A global pax path: tar-stream names the second entry notes.txt, npm (node-tar) package.json, so npm installs the second.
      const innocent = JSON.stringify({name: 'cleanroom-agent-innocent', version: '1.0.0', oclif: {}, cleanroom: {agent: {name: 'innocent', command: 'innocent'}}})
      const hooked = JSON.stringify({name: 'cleanroom-agent-innocent', version: '1.0.0', oclif: {hooks: {init: './hook.cjs'}}, cleanroom: {agent: {name: 'innocent', command: 'innocent'}}})
      const tarball = join(packs, 'reads-two-ways.tar')
      await writeFile(
        tarball,
        rawTar([
          {kind: 'file', name: 'package/package.json', content: innocent},
          {kind: 'global-pax', records: {path: 'package/notes.txt'}},
          {kind: 'pax', records: {comment: 'read differently'}},
          {kind: 'file', name: 'package/package.json', content: hooked},
        ]),
      )
      const refused = await install(tarball)
      expect(refused.exitCode, refused.stderr).to.equal(1)
      expect(refused.stderr).to.contain('cleanroom: plugin cleanroom-agent-innocent@1.0.0 adds agent "innocent"')
      expect(refused.stderr).to.contain('Error: npm installed something other than the cleanroom-agent-innocent@1.0.0 shown above (added: cleanroom-agent-innocent); it was removed again')
      expect(await installedPlugins()).to.deep.equal([])
      expect(await readFile(join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-innocent/package.json')).catch(() => 'gone')).to.equal('gone')
    })

    it('refuses to replace the built-in codex without --replace, saying from where, after showing the /etc source and loopback rule', async () => {
      const refused = await install('agent-codex-override')
      expect(refused.exitCode).to.equal(2)
      const shown = refused.stderr.split('\n').filter((line) => line.startsWith('cleanroom: '))
      expect(shown.slice(1)).to.deep.equal([
        'cleanroom: plugin cleanroom-agent-codex-override@1.0.0 adds agent "codex"',
        'cleanroom:   codex may reach: 127.0.0.0/8:22,2375, api.openai.com:443',
        'cleanroom:   codex copies into its sandbox: /etc/cleanroom-test-host-secret -> ~/.codex/auth.json',
        'cleanroom:   warning: codex copies /etc/cleanroom-test-host-secret: outside your home directory',
        'cleanroom:   warning: codex may reach 127.0.0.0/8:22,2375: covers loopback (services on this machine)',
      ])
      expect(refused.stderr).to.contain(
        'Error: cleanroom-agent-codex-override@1.0.0 adds agent "codex", which already exists: the codex agent of built-in plugin @cleanroom/agent-codex',
      )
      expect(refused.stderr).to.contain(`cleanroom plugins install file://${tarballs['agent-codex-override']} --replace`)
      expect((await listAgents()).agents.find((agent) => agent.name === 'codex')?.source).to.equal('built-in')

      const replaced = await install('agent-codex-override', '--replace')
      expect(replaced.exitCode, replaced.stderr).to.equal(0)
      const codex = (await listAgents()).agents.find((agent) => agent.name === 'codex')
      expect(codex?.source_detail).to.equal('installed plugin cleanroom-agent-codex-override@1.0.0')
      expect(codex?.warnings).to.deep.equal([
        'installed plugin cleanroom-agent-codex-override@1.0.0 replaces the codex agent of built-in plugin @cleanroom/agent-codex',
        'codex copies /etc/cleanroom-test-host-secret: outside your home directory',
        'codex may reach 127.0.0.0/8:22,2375: covers loopback (services on this machine)',
      ])
    })

    it('refuses a plugin named like one that ships with cleanroom', async () => {
      const dir = join(await dirs.make(), 'impostor')
      await mkdir(dir)
      await writeFile(join(dir, 'package.json'), JSON.stringify({name: '@cleanroom/agent-codex', version: '9.9.9', oclif: {}, cleanroom: {agent: {name: 'codex'}}}))
      const refused = await install(await packDirectory(dir, packs), '--replace')
      expect(refused.exitCode).to.equal(2)
      expect(refused.stderr).to.contain('@cleanroom/agent-codex is the name of a plugin that ships with cleanroom, which a plugin may not take over')
    })

    it('does not load an installed plugin edited on disk to add a hook (oclif alone would run it), and says so on every command', async () => {
      const installed = await install('agent-fake')
      expect(installed.exitCode, installed.stderr).to.equal(0)
      const root = join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-fake')
      const pjson = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as Record<string, unknown>
      await writeFile(join(root, 'package.json'), JSON.stringify({...pjson, oclif: {hooks: {init: './hook.cjs'}}}))
      await copyFile(join(PLUGIN_FIXTURES, 'agent-hooked/hook.cjs'), join(root, 'hook.cjs'))

      const {agents, stderr} = await listAgents()
      expect(agents.map((agent) => agent.name)).not.to.include('fake')
      expect(stderr).to.contain(
        'cleanroom: warning: plugin cleanroom-agent-fake is not loaded: it declares code that oclif would run in cleanroom (oclif.hooks (init)), and it was not added with --allow-code.',
      )
      expect(await markersIn(home)).to.deep.equal([])
      // bin/dev.js, cleanroom's development mode, checks them the same way.
      const dev = await execa(process.execPath, [join(PROJECT_ROOT, 'bin/dev.js'), 'config', 'path'], {cwd: PROJECT_ROOT, env, reject: false})
      expect(dev.stderr).to.contain('cleanroom: warning: plugin cleanroom-agent-fake is not loaded: it declares code that oclif would run in cleanroom')
      expect(await markersIn(home)).to.deep.equal([])

      // The same CLI started by oclif's own loader runs the hook: the check above is what stops it.
      await execa(process.execPath, ['--input-type=module', '-e', `const {execute} = await import('@oclif/core'); await execute({dir: ${JSON.stringify(join(PROJECT_ROOT, 'bin/run.js'))}, args: ['config', 'path']})`], {cwd: PROJECT_ROOT, env})
      expect(await markersIn(home)).to.deep.equal(['hooked-plugin-ran'])
    })

    it('does not load a plugin allowed to run code once its package.json changed', async () => {
      expect((await install('agent-hooked', '--allow-code')).exitCode).to.equal(0)
      const path = join(home, '.local/share/cleanroom/node_modules/cleanroom-agent-hooked/package.json')
      const pjson = JSON.parse(await readFile(path, 'utf8')) as {oclif: {hooks: Record<string, string>}}
      await writeFile(path, JSON.stringify({...pjson, oclif: {hooks: {...pjson.oclif.hooks, prerun: './hook.cjs'}}}))
      const {stderr} = await listAgents()
      expect(stderr).to.contain('plugin cleanroom-agent-hooked is not loaded: its package.json changed since its code was allowed with --allow-code')
      expect(await markersIn(home)).to.deep.equal([])
    })

    it('answers `plugins link` of a directory whose package.json is a fifo, /dev/zero or 2 GB at once with plugin_invalid, and links nothing', async () => {
      const hostile: Array<[string, (path: string) => Promise<unknown>, string]> = [
        ['a fifo', (path) => execa('mkfifo', [path]), 'is a fifo, not a file'],
        ['a link to /dev/zero', (path) => execa('ln', ['-s', '/dev/zero', path]), 'is a device, not a file'],
        ['2 GB', (path) => execa('truncate', ['-s', '2G', path]), 'is 2.0 GiB (2147483648 bytes): a package.json may be at most 1.0 MiB (1048576 bytes)'],
      ]
      for (const [what, make, said] of hostile) {
        const plugin = await dirs.make()
        await make(join(plugin, 'package.json'))
        const link = await runCli(['plugins', 'link', plugin], {env})
        expect(link.exitCode, `${what}: ${link.stderr}`).to.equal(2)
        expect(link.stderr, what).to.contain(`cannot link ${plugin}: ${join(plugin, 'package.json')} ${said}`)
        expect((await runCli(['plugins', '--json'], {env})).stdout, what).not.to.contain(plugin)
      }
    })
  })
}
