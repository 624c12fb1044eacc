import {expect} from 'chai'
import {open, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {PassThrough} from 'node:stream'

import {LaunchLog} from '../../src/sandbox/backends/linux-ns/launch-log.js'
import {tempDirs} from '../helpers/tmp.js'

describe("a launch's stderr in the sandbox log", () => {
  const dirs = tempDirs('cleanroom-launch-log-')
  afterEach(() => dirs.cleanup())

  async function logOf(write: (stderr: PassThrough) => void, drainMs?: number): Promise<{text: string; stderr: PassThrough}> {
    const path = join(await dirs.make(), 'sandbox.log')
    await writeFile(path, 'earlier launch\n')
    const stderr = new PassThrough()
    const log = new LaunchLog(await open(path, 'a'), stderr)
    write(stderr)
    await new Promise((resolve) => setImmediate(resolve))
    await log.close(drainMs)
    return {text: await readFile(path, 'latin1'), stderr}
  }

  it('is appended to the log, and the pipe is closed with the log', async () => {
    const {text, stderr} = await logOf((pipe) => pipe.write('nsinit: something to say\n'))
    expect(text).to.equal('earlier launch\nnsinit: something to say\n')
    expect(stderr.destroyed).to.equal(true)
  })

  it('keeps at most 64 KiB of one launch, and says it cut the rest', async () => {
    const {text} = await logOf((pipe) => {
      pipe.write('x'.repeat(60 * 1024))
      pipe.write('y'.repeat(60 * 1024))
      pipe.write('z'.repeat(1024))
    })
    expect(text).to.equal(`earlier launch\n${'x'.repeat(60 * 1024)}${'y'.repeat(4 * 1024)}\n[launch output cut at 64 KiB]\n`)
  })

  it('waits, when asked, for the writers of a failed launch to finish', async () => {
    const {text} = await logOf((pipe) => {
      setTimeout(() => pipe.end('bwrap: the last words\n'), 100)
    }, 2000)
    expect(text).to.equal('earlier launch\nbwrap: the last words\n')
  })
})
