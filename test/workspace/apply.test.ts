import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, readFile, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isCleanroomError} from '../../src/errors/index.js'
import {checkAgainstHost, writeChanges} from '../../src/workspace/apply.js'
import type {ArchivedContent, ChangesManifest} from '../../src/workspace/archive.js'
import type {ChangeRecord} from '../../src/workspace/changes.js'
import {blobOid, type EntryState} from '../../src/workspace/entry.js'
import {snapshotTree} from '../helpers/snapshot.js'
import {tempDirs} from '../helpers/tmp.js'

const file = (content: string, mode: '100644' | '100755' = '100644'): EntryState => ({mode, oid: blobOid('sha1', Buffer.from(content)), size: Buffer.byteLength(content)})

interface Change {
  path: string
  base: string | null | 'unknown'
  sandbox: string | null
  mode?: '100755'
}

function manifestOf(repo: string, changes: Change[]): {manifest: ChangesManifest; contents: () => AsyncGenerator<ArchivedContent>} {
  const records: ChangeRecord[] = changes.map((change) => ({
    path: change.path,
    change: change.sandbox === null ? 'deleted' : change.base === null ? 'added' : 'modified',
    risky: false,
    conflict: false,
    base: change.base === 'unknown' ? 'unknown' : change.base === null ? null : file(change.base),
    host: null,
    sandbox: change.sandbox === null ? null : file(change.sandbox, change.mode),
  }))
  const manifest: ChangesManifest = {workspace_source: repo, object_format: 'sha1', git_changes: 0, ignored_changes: 0, changes: records}
  async function* contents(): AsyncGenerator<ArchivedContent> {
    for (const change of changes) {
      if (change.sandbox !== null) yield {path: change.path, type: 'file', content: [Buffer.from(change.sandbox)] as unknown as AsyncIterable<Buffer>}
    }
  }
  return {manifest, contents}
}

describe('workspace apply: decided by content, written all or nothing', function () {
  this.timeout(30_000)
  const dirs = tempDirs('cleanroom-apply-')
  const locked: string[] = []
  afterEach(async () => {
    for (const path of locked.splice(0)) await execa('chattr', ['-i', path], {reject: false})
    await dirs.cleanup()
  })

  it('writes where the host has the base, skips what the host already has, and refuses what the host changed', async () => {
    const repo = await dirs.make()
    await writeFile(join(repo, 'same.txt'), 'base\n')
    await writeFile(join(repo, 'done.txt'), 'sandbox\n')
    await writeFile(join(repo, 'edited.txt'), 'host edit\n')
    const {manifest} = manifestOf(repo, [
      {path: 'same.txt', base: 'base\n', sandbox: 'sandbox\n'},
      {path: 'done.txt', base: 'base\n', sandbox: 'sandbox\n'},
      {path: 'edited.txt', base: 'base\n', sandbox: 'sandbox\n'},
      {path: 'unknown.txt', base: 'unknown', sandbox: 'x\n'},
      {path: 'new.txt', base: null, sandbox: 'x\n'},
    ])
    const check = await checkAgainstHost(repo, manifest)
    expect(check.toWrite.map((record) => record.path)).to.deep.equal(['same.txt', 'new.txt'])
    expect(check.alreadyThere.map((record) => record.path)).to.deep.equal(['done.txt'])
    expect(check.conflicts).to.deep.equal([
      'edited.txt (changed on the host since the sandbox started from it)',
      'unknown.txt (changed on the host since the sandbox started from it, and what it held before is not known)',
    ])
  })

  it('refuses a write under a directory the host replaced by a symlink, and never follows it', async () => {
    const repo = await dirs.make()
    const outside = await dirs.make()
    await symlink(outside, join(repo, 'lib'))
    const {manifest} = manifestOf(repo, [{path: 'lib/x.js', base: null, sandbox: 'x\n'}])
    const check = await checkAgainstHost(repo, manifest)
    expect(check.conflicts).to.deep.equal(['lib/x.js (lib is a symlink on the host)'])
  })

  it('judges a symlink by the directory it is written to: one that leads out through a link there is risky', async () => {
    const target = await dirs.make()
    const outside = await dirs.make()
    // In the sandbox's workspace `up` was a plain directory; in this target it is a link out of it.
    await symlink(outside, join(target, 'up'))
    const {manifest} = manifestOf(target, [{path: 'key', base: null, sandbox: 'x'}])
    manifest.changes[0]!.sandbox = {mode: '120000', oid: blobOid('sha1', Buffer.from('up/id_rsa')), size: 9}
    manifest.changes[0]!.link = 'up/id_rsa'
    const plain = manifestOf(target, [{path: 'notes.txt', base: null, sandbox: 'x'}]).manifest
    const [check, plainCheck] = [await checkAgainstHost(target, manifest), await checkAgainstHost(target, plain)]
    expect(check.toWrite.map((record) => [record.path, record.risky, record.risk])).to.deep.equal([['key', true, 'a symlink leading outside the repository (-> up/id_rsa)']])
    expect(plainCheck.toWrite.map((record) => record.risky)).to.deep.equal([false])
  })

  it('writes files with 644 or 755 only, deletes, and removes directories a deletion emptied', async () => {
    const repo = await dirs.make()
    await mkdir(join(repo, 'old/deep'), {recursive: true})
    await writeFile(join(repo, 'old/deep/gone.txt'), 'bye\n')
    await writeFile(join(repo, 'run.sh'), 'echo\n')
    const {manifest, contents} = manifestOf(repo, [
      {path: 'old/deep/gone.txt', base: 'bye\n', sandbox: null},
      {path: 'run.sh', base: 'echo\n', sandbox: 'echo\n', mode: '100755'},
      {path: 'src/new.ts', base: null, sandbox: 'export {}\n'},
    ])
    const check = await checkAgainstHost(repo, manifest)
    expect(check.conflicts).to.deep.equal([])
    await writeChanges(repo, manifest, check.toWrite, contents())
    expect(await readFile(join(repo, 'src/new.ts'), 'utf8')).to.equal('export {}\n')
    expect((await stat(join(repo, 'run.sh'))).mode & 0o7777).to.equal(0o755)
    expect((await stat(join(repo, 'src/new.ts'))).mode & 0o7000).to.equal(0)
    expect(Object.keys(await snapshotTree(repo)).sort()).to.deep.equal(['run.sh', 'src', 'src/new.ts'])
  })

  it('leaves the directory exactly as it was when a write fails part-way', async () => {
    const repo = await dirs.make()
    await writeFile(join(repo, 'a.txt'), 'base\n')
    await writeFile(join(repo, 'gone.txt'), 'bye\n')
    await mkdir(join(repo, 'locked'))
    const {manifest, contents} = manifestOf(repo, [
      {path: 'a.txt', base: 'base\n', sandbox: 'sandbox\n'},
      {path: 'gone.txt', base: 'bye\n', sandbox: null},
      {path: 'locked/b.txt', base: null, sandbox: 'b\n'},
      {path: 'z/new.txt', base: null, sandbox: 'z\n'},
    ])
    const before = await snapshotTree(repo)
    // An immutable directory: even root cannot add a file to it, so the third write fails after the first two.
    const lock = await execa('chattr', ['+i', join(repo, 'locked')], {reject: false})
    if (lock.exitCode !== 0) expect.fail(`this test needs chattr +i on the temp directory's filesystem: ${lock.stderr}`)
    locked.push(join(repo, 'locked'))
    const check = await checkAgainstHost(repo, manifest)
    const error = await writeChanges(repo, manifest, check.toWrite, contents()).catch((error_: unknown) => error_)
    expect(isCleanroomError(error) && error.code, String(error)).to.equal('workspace_apply_failed')
    expect((error as Error).message).to.contain('nothing was applied')
    expect(await snapshotTree(repo)).to.deep.equal(before)
  })

  it('writes nothing when a file arrives with other bytes than the list of changes names', async () => {
    const repo = await dirs.make()
    const {manifest} = manifestOf(repo, [
      {path: 'a.txt', base: null, sandbox: 'listed\n'},
      {path: 'b.txt', base: null, sandbox: 'b\n'},
    ])
    async function* swapped(): AsyncGenerator<ArchivedContent> {
      yield {path: 'a.txt', type: 'file', content: [Buffer.from('listed\n')] as unknown as AsyncIterable<Buffer>}
      yield {path: 'b.txt', type: 'file', content: [Buffer.from('rewritten since\n')] as unknown as AsyncIterable<Buffer>}
    }
    const error = await writeChanges(repo, manifest, manifest.changes, swapped()).catch((error_: unknown) => error_)
    expect(isCleanroomError(error) && error.code).to.equal('workspace_changed')
    expect(await snapshotTree(repo)).to.deep.equal({})
  })

  it('stops before writing anything on Ctrl-C while the files arrive, and passes the signal on once it has', async () => {
    const repo = await dirs.make()
    await writeFile(join(repo, 'a.txt'), 'base\n')
    const before = await snapshotTree(repo)
    const {manifest} = manifestOf(repo, [
      {path: 'a.txt', base: 'base\n', sandbox: 'sandbox\n'},
      {path: 'b.txt', base: null, sandbox: 'b\n'},
    ])
    // This listener stands in for the default action (the process ending), so mocha lives to see the signal come again.
    let seen = 0
    const onSignal = () => seen++
    process.on('SIGINT', onSignal)
    try {
      async function* interrupted(): AsyncGenerator<ArchivedContent> {
        yield {path: 'a.txt', type: 'file', content: [Buffer.from('sandbox\n')] as unknown as AsyncIterable<Buffer>}
        process.kill(process.pid, 'SIGINT')
        await new Promise((resolve) => setTimeout(resolve, 100))
        yield {path: 'b.txt', type: 'file', content: [Buffer.from('b\n')] as unknown as AsyncIterable<Buffer>}
      }
      const error = await writeChanges(repo, manifest, manifest.changes, interrupted()).catch((error_: unknown) => error_)
      expect(isCleanroomError(error) && [error.code, error.message, error.exitCode], String(error)).to.deep.equal(['interrupted', 'interrupted by SIGINT: nothing was applied', 130])
      expect(await snapshotTree(repo)).to.deep.equal(before)
      const deadline = Date.now() + 5000
      while (seen < 2 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
      expect(seen, 'the first SIGINT, then the one raised again after the write').to.equal(2)
    } finally {
      process.off('SIGINT', onSignal)
    }
  })
})
