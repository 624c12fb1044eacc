import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

const BUILTINS = ['claude', 'codex', 'gemini', 'opencode']

describe('cleanroom agent list / agent --help', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  async function homeWithConfig(config?: string): Promise<Record<string, string>> {
    const home = await dirs.make()
    if (config !== undefined) {
      await mkdir(join(home, '.config/cleanroom'), {recursive: true})
      await writeFile(join(home, '.config/cleanroom/config.yaml'), config)
    }
    return isolatedEnv(home)
  }

  it('lists the four built-in agents as JSON with their needs', async () => {
    const result = await runCli(['agent', 'list', '--json'], {env: await homeWithConfig()})
    expect(result.exitCode, result.stderr).to.equal(0)
    const agents = JSON.parse(result.stdout) as {name: string; source: string; credentials: unknown[]; network: {host: string}[]}[]
    expect(agents.map((agent) => agent.name)).to.deep.equal(BUILTINS)
    for (const agent of agents) {
      expect(agent.source).to.equal('built-in')
      expect(agent.credentials, agent.name).not.to.be.empty
      expect(agent.network.map((need) => need.host), agent.name).to.include('registry.npmjs.org')
    }
  })

  it('lists a custom agent from the runtime config next to the built-ins', async () => {
    const env = await homeWithConfig("agents:\n  mine:\n    command: my-agent --flag 'x y'\n    description: My own agent\n")
    const result = await runCli(['agent', 'list'], {env})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('mine  (runtime config ')
    expect(result.stdout).to.contain("command:      my-agent --flag 'x y'")
    expect(result.stdout).to.match(/codex {2}\(built-in plugin @cleanroom\/agent-codex\)/)
  })

  it('fails with exit 2 and the line of the problem when the runtime config is invalid', async () => {
    const env = await homeWithConfig('agents:\n  mine:\n    comand: x\n')
    const result = await runCli(['agent', 'list'], {env})
    expect(result.exitCode).to.equal(2)
    expect(result.stderr).to.contain('config.yaml:3:5 agents.mine.comand: unknown key')
  })

  it('names every agent and its source in agent --help', async () => {
    const env = await homeWithConfig('agents:\n  mine: {description: My own agent}\n')
    const result = await runCli(['agent', '--help'], {env})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('AGENTS')
    for (const name of BUILTINS) expect(result.stdout).to.match(new RegExp(`^ {2}${name} +built-in +\\S`, 'm'))
    expect(result.stdout).to.match(/^ {2}mine +config +My own agent$/m)
  })

  it('still shows help when the runtime config is broken, saying why agents are missing', async () => {
    const env = await homeWithConfig('default_backend: [\n')
    const result = await runCli(['agent', '--help'], {env})
    expect(result.exitCode).to.equal(0)
    expect(result.stdout).to.contain('cannot list agents: runtime config invalid')
  })

  it('says which credential files of an agent are not on this host, and when none is', async () => {
    // In copy mode every file is listed as copied (gateway mode, the default, copies only settings).
    const env = await homeWithConfig('agents:\n  codex:\n    credentials: copy\n')
    const none = await runCli(['agent', 'list'], {env})
    expect(none.exitCode, none.stderr).to.equal(0)
    const codex = none.stdout.slice(none.stdout.indexOf('codex  ('), none.stdout.indexOf('gemini  ('))
    expect(codex).to.contain('credentials:  ~/.codex/auth.json -> ~/.codex/auth.json  (not on this host)\n')
    expect(codex).to.contain('none of these is on this host: log in inside the sandbox (docs/agents.md)')

    await mkdir(join(env.HOME!, '.codex'))
    await writeFile(join(env.HOME!, '.codex/auth.json'), '{}')
    const some = await runCli(['agent', 'list', '--json'], {env})
    const agents = JSON.parse(some.stdout) as {name: string; missing_credentials: string[]; warnings: string[]}[]
    expect(agents.find((agent) => agent.name === 'codex')).to.deep.include({missing_credentials: ['~/.codex/config.toml'], warnings: []})
    const listed = (await runCli(['agent', 'list'], {env})).stdout
    const codexNow = listed.slice(listed.indexOf('codex  ('), listed.indexOf('gemini  ('))
    expect(codexNow).to.contain('credentials:  ~/.codex/auth.json -> ~/.codex/auth.json\n')
    expect(codexNow).not.to.contain('none of these is on this host')
  })
})
