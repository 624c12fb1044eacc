import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {readWorkspaceBase, recordWorkspaceBase} from '../../src/workspace/base.js'
import {tempDirs} from '../helpers/tmp.js'

describe("a workspace's base, noted when its sandbox is created", () => {
  const dirs = tempDirs('cleanroom-workspace-base-')
  after(() => dirs.cleanup())

  const git = (repo: string, ...args: string[]) => execFileSync('git', ['-C', repo, '-c', 'user.email=t@example.com', '-c', 'user.name=t', ...args])
  const noted = async (workspace: string) => {
    const state = await dirs.make()
    await recordWorkspaceBase(workspace, state)
    return readWorkspaceBase(state)
  }

  it('HEAD, the prefix and what differed: in a repository without a commit, at its top, and in a directory below it', async () => {
    const repo = join(await dirs.make(), 'repo')
    await mkdir(repo)
    git(repo, 'init', '-q')
    await writeFile(join(repo, 'a.txt'), 'a\n')
    expect(await noted(repo)).to.deep.equal({head: null, prefix: '', object_format: 'sha1', dirty: ['a.txt']})

    git(repo, 'add', 'a.txt')
    git(repo, 'commit', '-qm', 'first')
    const head = git(repo, 'rev-parse', 'HEAD').toString().trim()
    await mkdir(join(repo, 'sub'))
    await writeFile(join(repo, 'sub', 'b.txt'), 'b\n')
    expect(await noted(repo)).to.deep.equal({head, prefix: '', object_format: 'sha1', dirty: ['sub/b.txt']})
    expect(await noted(join(repo, 'sub'))).to.deep.equal({head, prefix: 'sub/', object_format: 'sha1', dirty: ['b.txt']})
  })

  it('nothing for a directory outside any repository', async () => {
    expect(await noted(await dirs.make())).to.equal(undefined)
  })
})
