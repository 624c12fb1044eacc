import {expect} from 'chai'
import {closeSync, openSync} from 'node:fs'
import {access, readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'

import {daemonLogger} from '../../src/daemon/log.js'
import {tempDirs} from '../helpers/tmp.js'

describe('the daemon log', () => {
  const dirs = tempDirs('cleanroom-log-')
  const fds: number[] = []

  afterEach(async () => {
    for (const fd of fds.splice(0)) closeSync(fd)
    await dirs.cleanup()
  })

  async function logFile(flags: string): Promise<{path: string; fd: number}> {
    const path = join(await dirs.make(), 'daemon.log')
    const fd = openSync(path, flags, 0o600)
    fds.push(fd)
    return {path, fd}
  }

  it('is rotated to daemon.log.1 past its size, one earlier file kept, through the same fd', async () => {
    const {path, fd} = await logFile('a')
    const log = daemonLogger(path, {fd, maxBytes: 1000})
    for (let i = 0; i < 60; i++) log(`line ${String(i).padStart(3, '0')} ${'x'.repeat(20)}`)
    const current = await readFile(path, 'utf8')
    const previous = await readFile(`${path}.1`, 'utf8')
    expect((await stat(path)).size).to.be.below(1000)
    expect(current).to.match(/^\S+ log rotated: the lines before are in .*daemon\.log\.1\n/)
    expect(current.trimEnd().split('\n').at(-1)).to.match(/ line 059 x+$/)
    // The two files hold the latest lines, in order, none lost between them, none twice.
    const numbers = `${previous}${current}`.split('\n').flatMap((line) => / line (\d+) /.exec(line)?.[1] ?? []).map(Number)
    expect(numbers.length).to.be.above(15)
    expect(numbers).to.deep.equal(Array.from({length: numbers.length}, (_, i) => 60 - numbers.length + i))
  })

  it('is left alone when the daemon writes its log elsewhere (a terminal, a journal, a file not opened for appending)', async () => {
    const {path, fd} = await logFile('w')
    const log = daemonLogger(path, {fd, maxBytes: 100})
    for (let i = 0; i < 10; i++) log(`line ${i} ${'x'.repeat(20)}`)
    expect((await stat(path)).size).to.be.above(100)
    expect(await access(`${path}.1`).then(() => 'rotated', () => 'not rotated')).to.equal('not rotated')
  })
})
