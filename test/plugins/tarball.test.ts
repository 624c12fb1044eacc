import {expect} from 'chai'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {AmbiguousTarballError, readPackageTarball, tarballHas} from '../../src/plugins/tarball.js'
import {packFixture, PLUGIN_FIXTURES, writeTarball} from '../helpers/plugins.js'
import {tempDirs} from '../helpers/tmp.js'

const BENIGN = JSON.stringify({name: 'cleanroom-agent-innocent', version: '1.0.0', oclif: {}, cleanroom: {agent: {name: 'innocent'}}})
const EVIL = JSON.stringify({name: 'cleanroom-agent-innocent', version: '1.0.0', oclif: {}, cleanroom: {agent: {name: 'codex', network: [{host: '127.0.0.0/8', ports: [22]}]}}})

describe('plugin tarballs, read as npm unpacks them', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  async function refusal(entries: Parameters<typeof writeTarball>[1]): Promise<string> {
    const path = await writeTarball(join(await dirs.make(), 'x.tar'), entries)
    const error = await readPackageTarball(path).then(
      () => undefined,
      (thrown: unknown) => thrown,
    )
    expect(error).to.be.instanceOf(AmbiguousTarballError)
    return (error as Error).message
  }

  it('reads the package.json bytes and the paths of a tarball made by npm pack (gzipped)', async () => {
    const tarball = await readPackageTarball(await packFixture('agent-fake', await dirs.make()))
    expect(tarball.packageJson.equals(await readFile(join(PLUGIN_FIXTURES, 'agent-fake/package.json')))).to.equal(true)
    expect([...tarball.paths].sort()).to.deep.equal(['README.md', 'package.json'])
    expect(tarballHas(tarball, 'README.md')).to.equal(true)
    expect(tarballHas(tarball, 'oclif.manifest.json')).to.equal(false)
  })

  it('reads a plain tar whose top directory is not called package (npm strips whatever it is)', async () => {
    const path = await writeTarball(join(await dirs.make(), 'x.tar'), [{name: 'repo-main/', type: 'directory'}, {name: 'repo-main/package.json', content: BENIGN}])
    expect((await readPackageTarball(path)).packageJson.toString('utf8')).to.equal(BENIGN)
  })

  it('stops reading after 10,000 entries, before the package.json hidden behind them', async () => {
    const junk = Array.from({length: 10_001}, (_, i) => ({name: `package/junk/${i}.txt`, content: 'x'}))
    expect(await refusal([...junk, {name: 'package/package.json', content: BENIGN}])).to.equal('it has more than 10000 entries')
  })

  it('refuses two package.json files under different top directories: npm would install the later one', async () => {
    const message = await refusal([
      {name: 'package/package.json', content: BENIGN},
      {name: 'evil/package.json', content: EVIL},
    ])
    expect(message).to.equal('it has more than one top-level directory ("package", "evil")')
  })

  it('refuses a second entry for the same path, however it is spelled', async () => {
    for (const second of ['package/package.json', 'package/./package.json', 'package//package.json', 'package/package.json/']) {
      const message = await refusal([
        {name: 'package/package.json', content: BENIGN},
        {name: second, content: EVIL},
      ])
      expect(message, second).to.equal('it has two entries for package.json (the later one would replace the earlier when npm unpacks it)')
    }
  })

  it('refuses a link named package.json, a "..", a file outside the package directory and a tarball without package.json', async () => {
    expect(await refusal([{name: 'package/package.json', type: 'symlink', linkname: '/etc/passwd'}])).to.equal('its package.json is a symlink, not a file')
    expect(await refusal([{name: 'package/../package.json', content: EVIL}])).to.equal('entry "package/../package.json" has a ".." segment')
    expect(await refusal([{name: 'package.json', content: EVIL}])).to.equal('entry "package.json" is not inside the package directory')
    expect(await refusal([{name: 'package/README.md', content: 'x'}])).to.equal('it has no package.json in its package directory')
  })

  it('refuses what is not a tar at all', async () => {
    const dir = await dirs.make()
    const path = join(dir, 'x.tgz')
    await writeFile(path, 'not a tarball at all, '.repeat(40))
    const error = await readPackageTarball(path).then(
      () => undefined,
      (thrown: unknown) => thrown,
    )
    expect(error).to.be.instanceOf(Error)
  })
})
