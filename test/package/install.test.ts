import {expect} from 'chai'
import {execa} from 'execa'
import {access, chmod, mkdir, realpath, symlink} from 'node:fs/promises'
import {delimiter, join} from 'node:path'

import {BUILT_IN_AGENT_PLUGINS, manifestCommandFiles, packageContentProblems, packProject} from '../../scripts/package-contents.js'
import {compilerFor, PREBUILT_TARGETS, prebuiltFile, prebuiltProblems} from '../../scripts/prebuilt.js'
import {socketPathOf} from '../../src/client/connect.js'
import {sandboxPids, leftoverSandboxes, stopCliDaemon} from '../helpers/daemon.js'
import {isolatedEnv, PROJECT_ROOT} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

/** What cleanroom may run from PATH (plus node for the bin's shebang): no C compiler among them. */
const TOOLS = ['node', 'bwrap', 'git', 'tar']
const COMPILERS = ['cc', 'gcc', 'c99', 'clang', 'tcc', ...PREBUILT_TARGETS.map((target) => `${target.triplet}-gcc`)]

interface ListedAgent {
  name: string
  source: string
  source_detail: string
}

describe('the npm package: npm pack, npm install -g of the tarball, cleanroom from that installation', function () {
  this.timeout(300_000)
  const dirs = tempDirs('cleanroom-package-')
  let work: string
  let installed: string
  let cleanroomBin: string
  let env: Record<string, string>
  /** npm run as a user would: the machine's npm cache and registry, none of the settings of the npm running these tests. */
  const npmEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !/^npm_/i.test(name)))
  let files: string[]
  let sandboxesBefore: Set<number>

  before(async () => {
    for (const target of PREBUILT_TARGETS) {
      const compiler = compilerFor(target)
      await access(prebuiltFile(target)).catch(() => {
        throw new Error(`${prebuiltFile(target)} was not built: npm run build compiles it with ${compiler.command} (apt-get install -y ${compiler.packages.join(' ')})`)
      })
    }
    sandboxesBefore = await sandboxPids()
    work = await realpath(await dirs.make())
    const pack = await packProject({destination: work})
    files = pack.files.map((file) => file.path)

    const prefix = join(work, 'prefix')
    await execa('npm', ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(work, pack.filename)], {cwd: work, env: npmEnv, extendEnv: false})
    installed = join(prefix, 'lib/node_modules/cleanroom')
    cleanroomBin = join(prefix, 'bin/cleanroom')

    // Its own dir, open to all: a root daemon's nsinit runs bwrap from PATH as the sandbox's uid, which cannot enter `work`.
    const tools = await dirs.make()
    await chmod(tools, 0o755)
    for (const tool of TOOLS) await symlink(await which(tool, process.env.PATH ?? ''), join(tools, tool))
    const home = join(work, 'home')
    await mkdir(home)
    env = {...isolatedEnv(home), PATH: [join(prefix, 'bin'), tools].join(delimiter), NO_COLOR: '1', npm_config_offline: 'true', npm_config_cache: join(home, '.npm')}
  })

  after(async () => {
    if (env) await stopCliDaemon(socketPathOf(undefined, env))
    const leftover = work ? await leftoverSandboxes(sandboxesBefore, work) : []
    await dirs.cleanup()
    expect(leftover, 'sandboxes of the installed cleanroom still running').to.deep.equal([])
  })

  async function cleanroom(args: string[], cwd = work): Promise<{stdout: string; stderr: string; exitCode: number}> {
    const result = await execa(cleanroomBin, args, {cwd, env, extendEnv: false, reject: false})
    return {stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? -1}
  }

  it('packs what cleanroom runs and nothing else: no tests, TypeScript sources or source maps', async () => {
    const commandFiles = await manifestCommandFiles()
    expect(commandFiles, 'commands in oclif.manifest.json').not.to.be.empty
    expect(packageContentProblems(files, commandFiles)).to.deep.equal([])
  })

  it('runs with no C compiler on PATH', async () => {
    for (const compiler of COMPILERS) {
      expect(await which(compiler, env.PATH!).catch(() => undefined), `${compiler} on the test's PATH`).to.equal(undefined)
    }
    const version = await cleanroom(['--version'])
    expect(version.exitCode, version.stderr).to.equal(0)
    expect(version.stdout).to.match(new RegExp(`^cleanroom/\\d+\\.\\d+\\.\\d+ ${process.platform}-${process.arch} node-v`))
  })

  it('lists the four built-in agents, from the plugins bundled in the package', async () => {
    const list = await cleanroom(['agent', 'list', '--json'])
    expect(list.exitCode, list.stderr).to.equal(0)
    const agents = JSON.parse(list.stdout) as ListedAgent[]
    expect(agents.map((agent) => [agent.name, agent.source, agent.source_detail])).to.deep.equal(
      ['claude', 'codex', 'gemini', 'opencode'].map((name) => [name, 'built-in', `built-in plugin @cleanroom/agent-${name}`]),
    )
    for (const plugin of BUILT_IN_AGENT_PLUGINS) await access(join(installed, 'node_modules', plugin, 'package.json'))
  })

  it('runs a command in a real sandbox launched by the prebuilt helper, which doctor names', async () => {
    const repo = join(work, 'repo')
    await mkdir(repo)
    await execa('git', ['init', '-q', repo])
    const exec = await cleanroom(['exec', '--', 'sh', '-c', 'id -u'], repo)
    expect(exec.exitCode, exec.stderr).to.equal(0)
    expect(exec.stdout).to.equal('1000')

    const doctor = await cleanroom(['doctor'], repo)
    const platform = `${process.platform}-${process.arch}`
    expect(doctor.stdout).to.contain(`; cleanroom-nsinit prebuilt for ${platform}: ${join(installed, 'dist/libexec', platform, 'cleanroom-nsinit')}\n`)
  })

  it('installs a plugin from file:// into the installation, and lists its agent', async () => {
    const packed = await execa('npm', ['pack', '--json', '--pack-destination', work], {cwd: join(PROJECT_ROOT, 'test/fixtures/plugins/agent-fake')})
    const [info] = JSON.parse(packed.stdout) as {filename: string}[]
    const install = await cleanroom(['plugins', 'install', `file://${join(work, info!.filename)}`])
    expect(install.exitCode, install.stderr).to.equal(0)
    expect(install.stderr).to.contain('cleanroom: plugin cleanroom-agent-fake@1.2.3 adds agent "fake"')
    const list = await cleanroom(['agent', 'list', '--json'])
    const fake = (JSON.parse(list.stdout) as ListedAgent[]).find((agent) => agent.name === 'fake')
    expect(fake).to.deep.include({source: 'plugin', source_detail: 'installed plugin cleanroom-agent-fake@1.2.3'})
  })

  it('ships each prebuilt helper as a static ELF for its machine; the one for this machine runs', async () => {
    for (const target of PREBUILT_TARGETS) {
      expect(await prebuiltProblems(prebuiltFile(target, installed), target)).to.deep.equal([])
    }
    const native = PREBUILT_TARGETS.find((target) => target.arch === process.arch)
    expect(native, `no prebuilt helper for ${process.arch}`).not.to.equal(undefined)
    const usage = await execa(prebuiltFile(native!, installed), [], {reject: false, env: {}, extendEnv: false})
    expect(usage.stderr).to.match(/^usage: nsinit create /)
  })

  it('builds a helper from source with npm run build:nsinit in the installation, and then uses that one', async () => {
    await execa('npm', ['run', 'build:nsinit'], {cwd: installed, env: npmEnv, extendEnv: false})
    const doctor = await cleanroom(['doctor'])
    expect(doctor.stdout).to.contain(`; cleanroom-nsinit built on this machine (npm run build:nsinit): ${join(installed, 'dist/libexec/cleanroom-nsinit')}\n`)
  })
})

async function which(command: string, path: string): Promise<string> {
  for (const dir of path.split(delimiter)) {
    const candidate = join(dir, command)
    if (await access(candidate).then(() => true, () => false)) return candidate
  }
  throw new Error(`${command} is not on PATH`)
}
