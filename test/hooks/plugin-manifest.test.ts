import {expect} from 'chai'
import {execa} from 'execa'
import {createWriteStream} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {pipeline} from 'node:stream/promises'
import {pack} from 'tar-stream'

import {readPluginManifest} from '../../src/hooks/plugin-manifest.js'
import {tempDirs} from '../helpers/tmp.js'

/** What the install preview reads of a plugin, and the CPU it spent: a hostile source must cost little. */
async function preview(url: string): Promise<{read: Awaited<ReturnType<typeof readPluginManifest>>; ms: number}> {
  const start = process.cpuUsage()
  const read = await readPluginManifest({type: 'repo', url})
  const used = process.cpuUsage(start)
  return {read, ms: (used.user + used.system) / 1000}
}

describe('the plugin install preview reads package.json with limits', () => {
  const dirs = tempDirs('cleanroom-plugin-manifest-')
  afterEach(() => dirs.cleanup())

  it('reads a plugin directory\'s package.json', async () => {
    const dir = await dirs.make()
    await writeFile(join(dir, 'package.json'), JSON.stringify({name: 'p', version: '1.0.0', cleanroom: {agent: {name: 'p'}}}))
    expect((await preview(`file:${dir}`)).read).to.deep.equal({manifest: {name: 'p', version: '1.0.0', cleanroom: {agent: {name: 'p'}}}})
  })

  it('calls a fifo, a device or a 2 GB package.json unreadable at once', async () => {
    const cases: [string, (path: string) => Promise<unknown>, RegExp][] = [
      ['fifo', (path) => execa('mkfifo', [path]), /package\.json is a fifo, not a file$/],
      ['device', (path) => execa('ln', ['-s', '/dev/zero', path]), /package\.json is a device, not a file$/],
      ['2 GB', (path) => execa('truncate', ['-s', '2G', path]), /package\.json is 2\.0 GiB \(2147483648 bytes\): a package\.json may be at most 1\.0 MiB \(1048576 bytes\)$/],
    ]
    for (const [what, make, expected] of cases) {
      const dir = await dirs.make()
      await make(join(dir, 'package.json'))
      const {read, ms} = await preview(`file:${dir}`)
      expect(ms, what).to.be.below(200)
      expect('unreadable' in read ? read.unreadable : read, what).to.match(expected)
    }
  })

  it('stops looking for package.json after 10,000 tarball entries', async () => {
    const dir = await dirs.make()
    await mkdir(join(dir, 'out'))
    const tarball = join(dir, 'out', 'plugin.tgz')
    const archive = pack()
    const written = pipeline(archive, createWriteStream(tarball))
    for (let i = 0; i < 10_001; i++) archive.entry({name: `package/junk/${i}.txt`}, 'x')
    archive.entry({name: 'package/package.json'}, '{"name": "late"}')
    archive.finalize()
    await written
    const {read} = await preview(`file:${tarball}`)
    expect('unreadable' in read ? read.unreadable : read).to.match(/has no <dir>\/package\.json in its first 10000 entries/)
  })
})
