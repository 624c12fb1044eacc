import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import {join} from 'node:path'
import {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {DaemonClient} from '../../src/client/client.js'
import {tempDirs} from '../helpers/tmp.js'

describe('streamed answers of the daemon', () => {
  const dirs = tempDirs('cleanroom-stream-')
  let server: Server | undefined
  afterEach(async () => {
    if (server) await new Promise((resolve) => server!.close(resolve))
    server = undefined
    await dirs.cleanup()
  })

  it('fail, never just end, when the daemon cuts a patch short', async () => {
    const socketPath = join(await dirs.make(), 'd.sock')
    server = createServer((_req, res) => {
      res.writeHead(200, {'content-type': 'text/x-diff'})
      res.write('diff --git a/x b/x\n')
      setTimeout(() => res.destroy(), 20)
    })
    await new Promise<void>((resolve) => server!.listen(socketPath, resolve))
    let received = ''
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        received += chunk.toString('utf8')
        done()
      },
    })
    const outcome = await pipeline(await new DaemonClient(socketPath).workspacePatch('cr_x'), sink).then(
      () => 'ended',
      (error: unknown) => String(error),
    )
    expect(received).to.equal('diff --git a/x b/x\n')
    expect(outcome).to.contain('the daemon broke off its answer to GET /v1/sandboxes/cr_x/workspace/diff (aborted)')
  })
})
