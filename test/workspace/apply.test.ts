import {expect} from 'chai'
import {execa} from 'execa'
import {lstat, mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isCleanroomError} from '../../src/errors/index.js'
import {applyWorkspacePatch, checkWorkspacePatch, type WorkspacePatch} from '../../src/workspace/apply.js'
import {tempDirs} from '../helpers/tmp.js'

const added = (path: string) => `diff --git a/${path} b/${path}\nnew file mode 100644\nindex 0000000..8ba3a16\n--- /dev/null\n+++ b/${path}\n@@ -0,0 +1 @@\n+n\n`

describe('workspace patch application', () => {
  const dirs = tempDirs('cleanroom-apply-')
  after(() => dirs.cleanup())

  const plan = (repo: string, patch: string): WorkspacePatch => ({sandboxId: 'cr_x', repo, patch, changes: []})
  const refusal = (promise: Promise<unknown>) =>
    promise.then(
      () => expect.fail('expected a refusal'),
      (error: unknown) => {
        expect(isCleanroomError(error) && error.code, String(error)).to.equal('workspace_conflict')
        return (error as Error).message
      },
    )

  for (const path of ['../escape.txt', 'sub/../../escape.txt', '/tmp/cleanroom-absolute-escape.txt']) {
    it(`refuses a patch path that leaves the repository: ${path}`, async () => {
      const home = await dirs.make()
      const repo = join(home, 'repo')
      await mkdir(repo)
      await execa('git', ['init', '-q', repo])
      await refusal(checkWorkspacePatch(plan(repo, added(path))))
      expect(await lstat(join(home, 'escape.txt')).catch(() => 'absent')).to.equal('absent')
      expect(await lstat('/tmp/cleanroom-absolute-escape.txt').catch(() => 'absent')).to.equal('absent')
    })
  }

  it('names the file the host already has, and applies in a subdirectory of a git repository', async () => {
    const home = await dirs.make()
    await execa('git', ['init', '-q', home])
    const repo = join(home, 'pkg')
    await mkdir(repo)
    await writeFile(join(repo, 'taken.txt'), 'host\n')
    expect(await refusal(checkWorkspacePatch(plan(repo, added('taken.txt'))))).to.contain('taken.txt (already exists in working directory)')
    await checkWorkspacePatch(plan(repo, added('new.txt')))
    await applyWorkspacePatch(plan(repo, added('new.txt')))
    expect(await readFile(join(repo, 'new.txt'), 'utf8')).to.equal('n\n')
    expect(await lstat(join(home, 'new.txt')).catch(() => 'absent')).to.equal('absent')
  })

  it('refuses changes the host made after the sandbox, before asking git', async () => {
    const repo = await dirs.make()
    const message = await refusal(checkWorkspacePatch({...plan(repo, added('x.txt')), changes: [{path: 'x.txt', change: 'modified', risky: false, conflict: true}]}))
    expect(message).to.contain('x.txt (changed on the host after the sandbox changed it)')
  })
})
