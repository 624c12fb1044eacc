import {expect} from 'chai'
import {lstat, mkdir, readFile, readlink, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pack} from 'tar-stream'

import {CleanroomError} from '../../src/errors/index.js'
import {extractUnder, packPath} from '../../src/util/tar-fs.js'
import {tempDirs} from '../helpers/tmp.js'

function archiveOf(entries: {name: string; type?: 'file' | 'symlink' | 'directory'; content?: string; linkname?: string; mode?: number}[]): Readable {
  const archive = pack()
  for (const entry of entries) {
    if (entry.type === 'symlink') archive.entry({name: entry.name, type: 'symlink', linkname: entry.linkname})
    else if (entry.type === 'directory') archive.entry({name: entry.name, type: 'directory', mode: entry.mode ?? 0o755})
    else archive.entry({name: entry.name, mode: entry.mode ?? 0o644}, entry.content ?? '')
  }
  archive.finalize()
  return Readable.from(archive)
}

describe('tar copy in and out', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  it('packs a tree and unpacks it under a new name with modes and links kept', async () => {
    const src = await dirs.make()
    await mkdir(join(src, 'tree/sub'), {recursive: true})
    await writeFile(join(src, 'tree/secret'), 'key', {mode: 0o600})
    await writeFile(join(src, 'tree/sub/run.sh'), '#!/bin/sh\n', {mode: 0o755})
    await symlink('secret', join(src, 'tree/link'))
    const dest = await dirs.make()
    const files = await extractUnder(dest, packPath(join(src, 'tree'), 'tree'), {from: 'tree', to: 'copy'})
    expect(files).to.equal(2)
    expect(await readFile(join(dest, 'copy/secret'), 'utf8')).to.equal('key')
    expect((await stat(join(dest, 'copy/secret'))).mode & 0o777).to.equal(0o600)
    expect((await stat(join(dest, 'copy/sub/run.sh'))).mode & 0o777).to.equal(0o755)
    expect(await readlink(join(dest, 'copy/link'))).to.equal('secret')
  })

  for (const [label, entries] of [
    ['a name with ..', [{name: 'out/../../escape', content: 'x'}]],
    ['an absolute name', [{name: '/etc/escape', content: 'x'}]],
    ['a symlink pointing out', [{name: 'out/link', type: 'symlink' as const, linkname: '../../..'}]],
    ['an absolute symlink', [{name: 'out/link', type: 'symlink' as const, linkname: '/etc'}]],
    ['an entry outside the copied path', [{name: 'other', content: 'x'}]],
  ] as const) {
    it(`refuses ${label} from a sandbox and writes nothing outside`, async () => {
      const root = await dirs.make()
      const dest = join(root, 'dest')
      const error = await extractUnder(dest, archiveOf([...entries]), {from: 'out', to: 'out'}).catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(CleanroomError)
      expect((error as CleanroomError).code).to.equal('path_escapes_root')
      expect(await lstat(join(root, 'escape')).catch(() => undefined)).to.equal(undefined)
    })
  }

  it('never writes through a symlink placed by an earlier entry', async () => {
    const root = await dirs.make()
    const outside = join(root, 'outside')
    await mkdir(outside)
    const dest = join(root, 'dest')
    const archive = archiveOf([
      {name: 'out', type: 'directory'},
      {name: 'out/inner', type: 'directory'},
      {name: 'out/link', type: 'symlink', linkname: 'inner'},
      {name: 'out/link/file', content: 'through the link'},
    ])
    const error = await extractUnder(dest, archive, {from: 'out', to: 'out'}).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('path_escapes_root')
    expect(await lstat(join(dest, 'out/inner/file')).catch(() => undefined)).to.equal(undefined)
  })
})
