import {expect} from 'chai'
import {execa} from 'execa'
import {copyFile, mkdir, readdir, symlink} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

describe('cleanroom --help', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  it('lists the topics that work, each with a one-line summary', async () => {
    const result = await runCli(['--help'], {env: isolatedEnv(await dirs.make())})
    expect(result.exitCode, result.stderr).to.equal(0)
    const topics = result.stdout.slice(result.stdout.indexOf('TOPICS'), result.stdout.indexOf('COMMANDS'))
    for (const topic of ['agent', 'config', 'plugins', 'policy']) expect(topics).to.match(new RegExp(`^ {2}${topic} +\\S.+$`, 'm'))
  })

  it('runs through the package bin with npx', async () => {
    const home = await dirs.make()
    const result = await execa('npx', ['--no-install', 'cleanroom', '--version'], {cwd: PROJECT_ROOT, env: isolatedEnv(home), reject: false})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.match(/^cleanroom\/\d+\.\d+\.\d+ /)
  })

  it('still runs, through oclif, from a build without the fast start bundle', async () => {
    // A copy of the package whose dist/ has everything but fast/ (a build made with tsc alone).
    const copy = await dirs.make()
    await mkdir(join(copy, 'bin'))
    await mkdir(join(copy, 'dist'))
    await copyFile(join(PROJECT_ROOT, 'bin/run.js'), join(copy, 'bin/run.js'))
    for (const file of ['package.json', 'oclif.manifest.json', 'node_modules']) await symlink(join(PROJECT_ROOT, file), join(copy, file))
    for (const entry of await readdir(join(PROJECT_ROOT, 'dist'))) {
      if (entry !== 'fast') await symlink(join(PROJECT_ROOT, 'dist', entry), join(copy, 'dist', entry))
    }
    const result = await execa(process.execPath, [join(copy, 'bin/run.js'), '--version'], {env: isolatedEnv(await dirs.make()), reject: false})
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.match(/^cleanroom\/\d+\.\d+\.\d+ /)
  })

  it('exits 2 on an unknown flag, naming it', async () => {
    const result = await runCli(['policy', 'validate', '--nope'], {env: isolatedEnv(await dirs.make())})
    expect(result.exitCode).to.equal(2)
    expect(result.stderr).to.contain('Nonexistent flag: --nope')
  })
})
