import {expect} from 'chai'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

describe('cleanroom config', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  it('init writes the commented config, validate accepts it, show prints it', async () => {
    const home = await dirs.make()
    const env = isolatedEnv(home)
    const path = join(home, '.config/cleanroom/config.yaml')

    const init = await runCli(['config', 'init'], {env})
    expect(init.exitCode, init.stderr).to.equal(0)
    expect(init.stdout.trim()).to.equal(`runtime config written: ${path}`)
    const text = await readFile(path, 'utf8')
    expect(text).to.contain('# cleanroom runtime config')
    for (const name of ['codex', 'claude', 'gemini', 'opencode']) expect(text).to.contain(`#  ${name}:\n`)

    const validate = await runCli(['config', 'validate'], {env})
    expect(validate.exitCode, validate.stderr).to.equal(0)
    expect(validate.stdout).to.equal(`runtime config valid: ${path}\ndefault backend: linux-ns`)

    const show = await runCli(['config', 'show', '--json'], {env})
    expect(JSON.parse(show.stdout)).to.deep.include({path, exists: true})
  })

  it('init refuses to overwrite without --force, and keeps the file', async () => {
    const home = await dirs.make()
    const env = isolatedEnv(home)
    await runCli(['config', 'init'], {env})
    const again = await runCli(['config', 'init'], {env})
    expect(again.exitCode).to.equal(1)
    expect(again.stderr).to.contain('runtime config already exists at')
    expect(again.stderr).to.contain('cleanroom config init --force')
    const forced = await runCli(['config', 'init', '--force'], {env})
    expect(forced.exitCode, forced.stderr).to.equal(0)
  })

  it('init --path writes where it is told, relative to the working directory', async () => {
    const home = await dirs.make()
    const result = await runCli(['config', 'init', '--path', 'sub/config.yaml', '--json'], {env: isolatedEnv(home), cwd: home})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(JSON.parse(result.stdout)).to.deep.equal({path: join(home, 'sub/config.yaml')})
  })

  it('path prints the location that XDG_CONFIG_HOME selects', async () => {
    const home = await dirs.make()
    const result = await runCli(['config', 'path'], {env: {...isolatedEnv(home), XDG_CONFIG_HOME: '/somewhere/else'}})
    expect(result.stdout).to.equal('/somewhere/else/cleanroom/config.yaml')
  })

  it('show prints the defaults when there is no file', async () => {
    const home = await dirs.make()
    const result = await runCli(['config', 'show'], {env: isolatedEnv(home)})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.contain('(not found: defaults)')
    expect(result.stdout).to.contain('default_backend: linux-ns')
  })

  it('validate explains a missing file and an invalid one', async () => {
    const home = await dirs.make()
    const env = isolatedEnv(home)
    const missing = await runCli(['config', 'validate'], {env})
    expect(missing.exitCode).to.equal(1)
    expect(missing.stderr).to.contain('runtime config does not exist at')
    expect(missing.stderr).to.contain('cleanroom config init')

    const bad = join(home, 'bad.yaml')
    await writeFile(bad, 'default_backend: linux-ns\nbackend: gvisor\n')
    const invalid = await runCli(['config', 'validate', '--path', bad, '--json'], {env})
    expect(invalid.exitCode).to.equal(2)
    const body = JSON.parse(invalid.stdout) as {error: {code: string; message: string}}
    expect(body.error.code).to.equal('config_invalid')
    expect(body.error.message).to.contain('bad.yaml:2:1 backend: unknown key')
  })
})
