import {expect} from 'chai'
import {chmod, lstat, mkdir, readFile, readlink, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {pack} from 'tar-stream'

import {CleanroomError} from '../../src/errors/index.js'
import {extractUnder} from '../../src/util/tar-extract.js'
import {packPath} from '../../src/util/tar-fs.js'
import {tempDirs} from '../helpers/tmp.js'

type Entry = {name: string; type?: 'file' | 'symlink' | 'directory'; content?: string; linkname?: string; mode?: number}

function archiveOf(entries: Entry[]): Readable {
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
    ['a symlink that climbs out through a link to .', [
      {name: 'out', type: 'directory' as const},
      {name: 'out/s', type: 'symlink' as const, linkname: '.'},
      {name: 'out/link', type: 'symlink' as const, linkname: 's/s/s/../../../../etc/shadow'},
    ]],
    ['a symlink that climbs out through a link made after it', [
      {name: 'out', type: 'directory' as const},
      {name: 'out/link', type: 'symlink' as const, linkname: 'x/../../escape'},
      {name: 'out/x', type: 'symlink' as const, linkname: '.'},
    ]],
    ['a symlink to the directory holding the copy', [{name: 'out/up', type: 'symlink' as const, linkname: '..'}]],
    ['a copied symlink on its own (it has no inside to point to)', [{name: 'out', type: 'symlink' as const, linkname: 'anything'}]],
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

  it('drops setuid, setgid and sticky bits of files and setuid and setgid of directories', async () => {
    const dest = await dirs.make()
    const archive = archiveOf([
      {name: 'out', type: 'directory', mode: 0o2755},
      {name: 'out/suid', mode: 0o4755, content: '#!/bin/sh\n'},
      {name: 'out/sgid', mode: 0o2711, content: 'x'},
      {name: 'out/shared', type: 'directory', mode: 0o1777},
    ])
    await extractUnder(dest, archive, {from: 'out', to: 'out'})
    expect((await stat(join(dest, 'out'))).mode & 0o7777).to.equal(0o755)
    expect((await stat(join(dest, 'out/suid'))).mode & 0o7777).to.equal(0o755)
    expect((await stat(join(dest, 'out/sgid'))).mode & 0o7777).to.equal(0o711)
    expect((await stat(join(dest, 'out/shared'))).mode & 0o7777).to.equal(0o1777)
  })

  it('keeps symlinks whose resolved target stays inside the copy', async () => {
    const dest = await dirs.make()
    const archive = archiveOf([
      {name: 'out', type: 'directory'},
      {name: 'out/a/b', type: 'directory'},
      {name: 'out/a/b/file', content: 'x'},
      {name: 'out/here', type: 'symlink', linkname: '.'},
      {name: 'out/deep', type: 'symlink', linkname: 'here/here/a/b/../b/file'},
    ])
    await extractUnder(dest, archive, {from: 'out', to: 'out'})
    expect(await readFile(join(dest, 'out/deep'), 'utf8')).to.equal('x')
  })

  it('never follows a symlink already at the destination: a directory entry does not chmod its target', async () => {
    const root = await dirs.make()
    const outside = join(root, 'outside')
    await mkdir(outside, {mode: 0o700})
    await chmod(outside, 0o700)
    const dest = join(root, 'dest')
    await mkdir(join(dest, 'out'), {recursive: true})
    await symlink(outside, join(dest, 'out/sub'))
    const archive = archiveOf([
      {name: 'out', type: 'directory'},
      {name: 'out/sub', type: 'directory', mode: 0o777},
      {name: 'out/sub/file', content: 'x'},
    ])
    const error = await extractUnder(dest, archive, {from: 'out', to: 'out'}).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('path_escapes_root')
    expect((await stat(outside)).mode & 0o7777).to.equal(0o700)
    expect(await lstat(join(outside, 'file')).catch(() => 'absent')).to.equal('absent')
  })

  it('replaces a symlink already at a file\'s name instead of writing through it', async () => {
    const root = await dirs.make()
    const victim = join(root, 'victim')
    await writeFile(victim, 'host file\n', {mode: 0o600})
    const dest = join(root, 'dest')
    await mkdir(join(dest, 'out'), {recursive: true})
    await symlink(victim, join(dest, 'out/file'))
    await extractUnder(dest, archiveOf([{name: 'out/file', content: 'from the sandbox', mode: 0o4755}]), {from: 'out', to: 'out'})
    expect(await readFile(victim, 'utf8')).to.equal('host file\n')
    expect((await stat(victim)).mode & 0o7777).to.equal(0o600)
    expect((await lstat(join(dest, 'out/file'))).isFile()).to.equal(true)
    expect(await readFile(join(dest, 'out/file'), 'utf8')).to.equal('from the sandbox')
  })

  it('prints names from the archive terminal-safe when it refuses them', async () => {
    const dest = await dirs.make()
    const error = await extractUnder(dest, archiveOf([{name: 'out/\u001b[2Kx', type: 'symlink', linkname: '/\u009b31m'}]), {from: 'out', to: 'out'}).catch((error_: unknown) => error_)
    expect((error as Error).message).not.to.match(/[\u0000-\u001f\u007f-\u009f]/)
    expect((error as Error).message).to.contain('out/\\x1b[2Kx -> /\\x9b31m')
  })
})
