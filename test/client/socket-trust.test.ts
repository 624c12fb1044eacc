import {expect} from 'chai'
import {chmod, chown, mkdir, readdir, symlink} from 'node:fs/promises'
import {createServer, type Server} from 'node:net'
import {join} from 'node:path'

import {DaemonClient} from '../../src/client/client.js'
import {connectDaemon} from '../../src/client/connect.js'
import {CleanroomError} from '../../src/errors/index.js'
import {runCli} from '../helpers/cli.js'
import {startTestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

const OTHER_UID = 4321

/** A server at `socketPath` that answers nothing and counts the bytes it is sent: what an impostor would learn. */
async function impostor(socketPath: string): Promise<{server: Server; received: () => number}> {
  let bytes = 0
  const server = createServer((socket) => socket.on('data', (chunk: Buffer) => (bytes += chunk.length)))
  await new Promise<void>((resolve) => server.listen(socketPath, resolve))
  return {server, received: () => bytes}
}

async function refusal(promise: Promise<unknown>): Promise<CleanroomError> {
  const error = await promise.then(
    () => undefined,
    (caught: unknown) => caught,
  )
  expect(error, 'the request was refused').to.be.instanceOf(CleanroomError)
  return error as CleanroomError
}

describe('the CLI trusts only a daemon socket its user or root controls', function () {
  this.timeout(30_000)
  const dirs = tempDirs('cleanroom-socket-trust-')
  const servers: Server[] = []

  before(() => {
    expect(process.geteuid?.(), 'these tests make files owned by another uid: run them as root').to.equal(0)
  })

  afterEach(async () => {
    for (const server of servers.splice(0)) await new Promise((resolve) => server.close(resolve))
    await dirs.cleanup()
  })

  async function listenAt(socketPath: string): Promise<() => number> {
    const fake = await impostor(socketPath)
    servers.push(fake.server)
    return fake.received
  }

  it('sends nothing to a socket in a directory others can write, and says why and what to do', async () => {
    const open = join(await dirs.make(), 'shared')
    await mkdir(open)
    await chmod(open, 0o777)
    const received = await listenAt(join(open, 'cleanroom.sock'))
    const error = await refusal(new DaemonClient(join(open, 'cleanroom.sock')).ping())
    expect(error.code).to.equal('daemon_untrusted')
    expect(error.message).to.equal(`refusing to talk to a cleanroom daemon at ${open}/cleanroom.sock: ${open} is writable by other users (mode 0777), so anyone could have put a socket there`)
    expect(error.suggestions[0]).to.equal(`chmod go-w ${open} (if it is yours)`)
    expect(received()).to.equal(0)
  })

  it('refuses the sticky bit on the socket directory itself (anyone may create the socket while no daemon runs)', async () => {
    const sticky = join(await dirs.make(), 'sticky')
    await mkdir(sticky)
    await chmod(sticky, 0o1777)
    const received = await listenAt(join(sticky, 'cleanroom.sock'))
    expect((await refusal(new DaemonClient(join(sticky, 'cleanroom.sock')).ping())).message).to.contain('is writable by other users (mode 1777)')
    expect(received()).to.equal(0)
  })

  it("refuses a socket owned by another user in the user's own directory", async () => {
    const dir = await dirs.make()
    const socketPath = join(dir, 'cleanroom.sock')
    const received = await listenAt(socketPath)
    await chown(socketPath, OTHER_UID, OTHER_UID)
    const error = await refusal(new DaemonClient(socketPath).ping())
    expect(error.message).to.contain(`the socket is owned by uid ${OTHER_UID}, not by you (root) or root`)
    expect(received()).to.equal(0)
  })

  it('refuses a directory owned by another user, and one reached through a symlink into such a directory', async () => {
    const base = await dirs.make()
    const theirs = join(base, 'theirs')
    await mkdir(theirs, {mode: 0o700})
    const received = await listenAt(join(theirs, 'cleanroom.sock'))
    await chown(theirs, OTHER_UID, OTHER_UID)
    expect((await refusal(new DaemonClient(join(theirs, 'cleanroom.sock')).ping())).message).to.contain(`${theirs} is owned by uid ${OTHER_UID}`)
    await symlink(theirs, join(base, 'mine'))
    expect((await refusal(new DaemonClient(join(base, 'mine', 'cleanroom.sock')).ping())).message).to.contain(`${theirs} is owned by uid ${OTHER_UID}`)
    expect(received()).to.equal(0)
  })

  it('refuses a directory below one others can write (no sticky bit): it could be swapped', async () => {
    const base = await dirs.make()
    await mkdir(join(base, 'open', 'mine'), {recursive: true, mode: 0o700})
    await chmod(join(base, 'open'), 0o777)
    const received = await listenAt(join(base, 'open', 'mine', 'cleanroom.sock'))
    expect((await refusal(new DaemonClient(join(base, 'open', 'mine', 'cleanroom.sock')).ping())).message).to.contain(`${base}/open is writable by other users (mode 0777)`)
    expect(received()).to.equal(0)
  })

  it('talks to a daemon in a private directory below /tmp (sticky, like every test daemon)', async () => {
    const daemon = await startTestDaemon(await dirs.make())
    try {
      expect((await daemon.client.ping()).version).to.equal('test')
    } finally {
      await daemon.daemon.close()
    }
  })

  it('does not start a daemon into a directory another user controls', async () => {
    const home = await dirs.make()
    const runtime = join(home, 'run')
    await mkdir(runtime, {mode: 0o700})
    await chown(runtime, OTHER_UID, OTHER_UID)
    const env = {HOME: home, XDG_RUNTIME_DIR: runtime, XDG_STATE_HOME: join(home, 'state')}
    const client = connectDaemon({runScript: '/nonexistent/run.js', env})
    const error = await refusal(client.ping())
    expect(error.code).to.equal('daemon_untrusted')
    expect(error.message).to.contain(`refusing to start a cleanroom daemon in ${runtime}/cleanroom: ${runtime} is owned by uid ${OTHER_UID}`)
    expect(await readdir(home)).to.deep.equal(['run'])
  })

  it('`cleanroom sandbox ls` exits 1 with the reason, having sent the impostor nothing', async () => {
    const open = join(await dirs.make(), 'shared')
    await mkdir(open)
    await chmod(open, 0o777)
    const received = await listenAt(join(open, 'cleanroom.sock'))
    const result = await runCli(['sandbox', 'ls', '--host', `unix://${open}/cleanroom.sock`])
    expect(result.exitCode).to.equal(1)
    expect(result.stderr).to.contain(`Error: refusing to talk to a cleanroom daemon at ${open}/cleanroom.sock: ${open} is writable by other users (mode 0777)`)
    expect(result.stderr).to.contain(`Try this: chmod go-w ${open} (if it is yours)`)
    expect(received()).to.equal(0)
  })
})
