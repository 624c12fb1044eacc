import {expect} from 'chai'
import {access} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

const exists = (path: string) => access(path).then(() => true, () => false)

describe('the daemon a command starts when none answers', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-autostart-')
  const started: Array<{socket: string; env: Record<string, string>}> = []

  afterEach(async () => {
    for (const {socket, env} of started.splice(0)) await runCli(['serve', 'stop', '--host', `unix://${socket}`], {env})
    await dirs.cleanup()
  })

  it('is not started, nor its directory made, for a --host or CLEANROOM_HOST socket in a directory that does not exist (a typo)', async () => {
    const home = await dirs.make()
    const env = isolatedEnv(home)
    const socket = join(home, 'no-such-dir', 'd.sock')
    // Stopped afterwards should one have been started there after all.
    started.push({socket, env})
    for (const [args, extra] of [
      [['sandbox', 'ls', '--host', `unix://${socket}`], {}],
      [['sandbox', 'ls'], {CLEANROOM_HOST: `unix://${socket}`}],
    ] as const) {
      const cli = await runCli(args, {env: {...env, ...extra}})
      expect(cli.exitCode).to.equal(1)
      expect(cli.stderr).to.include(`Error: no cleanroom daemon answers at ${socket}, and ${join(home, 'no-such-dir')} does not exist: no daemon is started there`)
      expect(cli.stderr).to.include('Try this: Use the default daemon (started when needed): leave out --host and unset CLEANROOM_HOST')
      expect(await exists(join(home, 'no-such-dir'))).to.equal(false)
      expect(await exists(join(home, '.local/state/cleanroom/daemon.log'))).to.equal(false)
    }
  })

  it('is started for a --host socket in a directory that exists', async () => {
    const home = await dirs.make()
    const env = isolatedEnv(home)
    const socket = join(home, 'd.sock')
    started.push({socket, env})
    const cli = await runCli(['sandbox', 'ls', '--json', '--host', `unix://${socket}`], {env})
    expect(cli.stderr).to.equal('')
    expect(cli.exitCode).to.equal(0)
    expect(JSON.parse(cli.stdout)).to.deep.equal([])
    expect(await exists(socket)).to.equal(true)
  })
})
