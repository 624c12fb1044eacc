import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, runCli} from '../helpers/cli.js'
import {stopCliDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

/** Help and error texts as a new user meets them: each line a user would copy must work when pasted. */
describe('help and error texts', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())
  const env = async () => isolatedEnv(await dirs.make())

  it('names a missing command with spaces, as it was typed, and the help to look at', async () => {
    const result = await runCli(['sandbox', 'pull', 'x'], {env: await env()})
    expect(result.exitCode).to.equal(2)
    expect(result.stderr).to.contain('command sandbox pull x not found')
    expect(result.stderr).to.contain('See the commands with: cleanroom sandbox --help')
    const unknown = await runCli(['policy', 'frob', 'x'], {env: await env()})
    expect(unknown.stderr).to.contain('command policy frob x not found')
    expect(unknown.stderr).not.to.contain('policy:frob')
  })

  it('lists a command\'s other names under ALIASES, never the one typed', async () => {
    const viaAlias = await runCli(['create', '--help'], {env: await env()})
    const aliases = (text: string) => text.slice(text.indexOf('ALIASES'), text.indexOf('EXAMPLES'))
    expect(aliases(viaAlias.stdout)).to.equal('ALIASES\n  $ cleanroom sandbox create\n\n')
    expect(aliases((await runCli(['sandbox', 'create', '--help'], {env: await env()})).stdout)).to.equal('ALIASES\n  $ cleanroom create\n\n')
    expect(aliases((await runCli(['sandbox', 'ls', '--help'], {env: await env()})).stdout)).to.equal('ALIASES\n  $ cleanroom sandbox list\n\n')
  })

  it('ends the USAGE line of exec with -- CMD... and of agent with NAME [AGENT ARGS...]', async () => {
    const exec = await runCli(['exec', '--help'], {env: await env()})
    expect(exec.stdout.slice(exec.stdout.indexOf('USAGE'), exec.stdout.indexOf('FLAGS'))).to.match(/\[-t\] -- CMD\.\.\.\n/)
    const agent = await runCli(['agent', '--help'], {env: await env()})
    const usage = agent.stdout.slice(agent.stdout.indexOf('USAGE'), agent.stdout.indexOf('ARGUMENTS'))
    expect(usage.replaceAll(/\s+/g, ' ')).to.match(/\$ cleanroom agent \[--host .*\[--update\] NAME \[AGENT ARGS\.\.\.\] $/)
  })

  it('offers both backends wherever --backend and default_backend are offered', async () => {
    for (const command of [['exec'], ['agent'], ['sandbox', 'create']]) {
      const help = await runCli([...command, '--help'], {env: await env()})
      expect(help.stdout.replaceAll(/\s+/g, ' '), command.join(' ')).to.match(/--backend=<option>.*<options: linux-ns\|gvisor>/)
      expect(help.stdout, command.join(' ')).not.to.contain('not available yet')
    }
    const home = await dirs.make()
    await runCli(['config', 'init'], {env: isolatedEnv(home)})
    const {readFile} = await import('node:fs/promises')
    const template = await readFile(join(home, '.config/cleanroom/config.yaml'), 'utf8')
    expect(template).to.contain('# Backend for new sandboxes: linux-ns (bubblewrap) or gvisor (runsc, stronger isolation: docs/backends.md).')
  })

  it('says to put the command after -- when exec meets a flag of the command', async () => {
    const result = await runCli(['exec', '--keep', 'ls', '-la', 'my dir'], {env: await env()})
    expect(result.exitCode).to.equal(2)
    expect(result.stderr).to.contain("Try this: Put the command after --: cleanroom exec --keep -- ls -la 'my dir'")
  })

  it('spells the runtime config flag --path everywhere, and still takes agent list --config-path', async () => {
    const home = await dirs.make()
    const config = join(home, 'elsewhere.yaml')
    await writeFile(config, 'agents:\n  mine:\n    command: mine\n')
    for (const flag of ['--path', '--config-path']) {
      const result = await runCli(['agent', 'list', flag, config, '--json'], {env: isolatedEnv(home)})
      expect(result.exitCode, result.stderr).to.equal(0)
      expect((JSON.parse(result.stdout) as {name: string}[]).map((agent) => agent.name)).to.include('mine')
    }
    const help = await runCli(['agent', 'list', '--help'], {env: isolatedEnv(home)})
    expect(help.stdout).to.contain('--path=FILE')
    expect(help.stdout).not.to.contain('config-path')
  })

  it('spells the repository directory -c, --chdir everywhere, and still takes workspace apply --directory', async () => {
    const help = await runCli(['workspace', 'apply', '--help'], {env: await env()})
    expect(help.stdout).to.match(/-c, --chdir=DIR/)
    expect(help.stdout).not.to.contain('--directory')
    // The CLI starts a daemon for the --host it is given: one in this test's own dir, stopped after.
    const home = await dirs.make()
    const socket = join(home, 'd.sock')
    try {
      const old = await runCli(['workspace', 'apply', 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA', '--directory', join(home, 'missing'), '--host', `unix://${socket}`], {env: isolatedEnv(home)})
      expect(old.stderr).not.to.contain('Nonexistent flag')
    } finally {
      await stopCliDaemon(socket)
    }
  })

  it('puts the --path the user gave into the lines to try', async () => {
    const home = await dirs.make()
    const elsewhere = join(home, 'my configs', 'config.yaml')
    const missing = await runCli(['config', 'validate', '--path', elsewhere], {env: isolatedEnv(home)})
    expect(missing.stderr).to.contain(`Try this: Create one with: cleanroom config init --path '${elsewhere}'`)
    await mkdir(join(home, 'my configs'))
    await writeFile(elsewhere, 'default_backend: [\n')
    const invalid = await runCli(['config', 'validate', '--path', elsewhere], {env: isolatedEnv(home)})
    expect(invalid.stderr).to.contain(`then check with: cleanroom config validate --path '${elsewhere}'`)
    await writeFile(elsewhere, 'default_backend: linux-ns\n')
    const exists = await runCli(['config', 'init', '--path', elsewhere], {env: isolatedEnv(home)})
    expect(exists.stderr).to.contain(`Try this: Overwrite it with: cleanroom config init --path '${elsewhere}' --force`)
    const plain = await runCli(['config', 'validate'], {env: isolatedEnv(home)})
    expect(plain.stderr, 'the default file needs no --path').to.contain('Try this: Create one with: cleanroom config init (without')
  })

  it('puts the -c the user gave into doctor\'s fix for the policy', async () => {
    const home = await dirs.make()
    const repo = join(home, 'repo')
    await mkdir(repo)
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 7\n')
    const result = await runCli(['doctor', '-c', repo], {env: isolatedEnv(home)})
    expect(result.stdout).to.contain(`fix: Fix cleanroom.yaml, then: cleanroom policy validate -c ${repo}`)
  })
})
