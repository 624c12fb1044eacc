import {expect} from 'chai'
import {execa} from 'execa'
import {lstat, readFile, readlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cliRepoSuite} from '../helpers/cli-repo.js'
import {PROJECT_ROOT} from '../helpers/cli.js'

const BINARY = Buffer.from([0, 1, 2, 0x62, 0x69, 0x6e, 0xff, 0x0a])

describe('cleanroom workspace diff / apply (CLI, real sandboxes)', function () {
  this.timeout(60_000)
  const suite = cliRepoSuite('cleanroom-workspace-', async ({repo}) => {
    await writeFile(join(repo, 'edit.txt'), 'one\ntwo\nthree\n')
    await writeFile(join(repo, 'gone.txt'), 'bye\n')
    await writeFile(join(repo, 'run.sh'), '#!/bin/sh\necho hi\n', {mode: 0o644})
    await writeFile(join(repo, 'same.txt'), 'unchanged\n')
    await writeFile(join(repo, '.gitignore'), 'node_modules/\n.env\n')
    await writeFile(join(repo, '.env'), 'SECRET=1\n')
    await execa('git', ['add', '-A'], {cwd: repo})
    await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'init'], {cwd: repo})
  })
  const cli = (args: string[]) => suite.cli(args)
  /** A kept sandbox of the repository in which `script` has run. */
  const sandboxAfter = async (script: string): Promise<string> => {
    const result = await cli(['exec', '--keep', '--', 'sh', '-c', script])
    expect(result.exitCode, result.stderr).to.equal(0)
    return /sandbox_id=(cr_\w+)/.exec(result.stderr)![1]!
  }
  const read = (path: string) => readFile(join(suite.repo, path), 'utf8')

  it('shows each kind of change as a git patch and applies exactly those changes to the host', async () => {
    const id = await sandboxAfter(
      [
        "printf 'one\\nTWO\\nthree\\n' > edit.txt",
        'mkdir sub && echo new > sub/new.txt',
        'rm gone.txt',
        'chmod +x run.sh',
        'ln -s edit.txt link',
        "printf '\\000\\001\\002bin\\377\\n' > blob.bin",
        'cat same.txt > /tmp/s && cat /tmp/s > same.txt',
        'mkdir node_modules && echo x > node_modules/dep.js',
        'echo junk > .git/cleanroom-test',
      ].join(' && '),
    )
    const diff = await cli(['workspace', 'diff', id])
    expect(diff.exitCode, diff.stderr).to.equal(0)
    expect(diff.stdout).to.contain('diff --git a/edit.txt b/edit.txt\n')
    expect(diff.stdout).to.contain('-two\n+TWO\n')
    expect(diff.stdout).to.contain('diff --git a/sub/new.txt b/sub/new.txt\nnew file mode 100644\n')
    expect(diff.stdout).to.contain('diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n')
    expect(diff.stdout).to.contain('diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n')
    expect(diff.stdout).to.match(/diff --git a\/blob\.bin b\/blob\.bin\nnew file mode 100644\nindex 0+\.\.[0-9a-f]+\nGIT binary patch\n/)
    for (const absent of ['same.txt', 'node_modules', '.env', '.git/']) expect(diff.stdout).not.to.contain(`a/${absent}`)

    const json = await cli(['workspace', 'diff', id, '--json'])
    expect(json.exitCode, json.stderr).to.equal(0)
    const summary = JSON.parse(json.stdout) as Record<string, unknown>
    expect(summary).to.include({sandbox_id: id, workspace_source: suite.repo, git_changes: 1, ignored_changes: 1})
    expect(summary.changes).to.deep.equal([
      {path: 'blob.bin', change: 'added', risky: false, conflict: false},
      {path: 'edit.txt', change: 'modified', risky: false, conflict: false},
      {path: 'gone.txt', change: 'deleted', risky: false, conflict: false},
      {path: 'link', change: 'added', risky: false, conflict: false},
      {path: 'run.sh', change: 'mode', risky: false, conflict: false},
      {path: 'sub/new.txt', change: 'added', risky: false, conflict: false},
    ])

    const apply = await cli(['workspace', 'apply', id])
    expect(apply.exitCode, apply.stderr).to.equal(0)
    expect(apply.stdout).to.contain(`applied 6 files to ${suite.repo} (3 added, 1 modified, 1 deleted, 1 mode changed)`)
    expect(await read('edit.txt')).to.equal('one\nTWO\nthree\n')
    expect(await read('sub/new.txt')).to.equal('new\n')
    expect(await readFile(join(suite.repo, 'blob.bin'))).to.deep.equal(BINARY)
    expect((await lstat(join(suite.repo, 'run.sh'))).mode & 0o777).to.equal(0o755)
    expect(await readlink(join(suite.repo, 'link'))).to.equal('edit.txt')
    expect(await lstat(join(suite.repo, 'gone.txt')).catch(() => 'absent')).to.equal('absent')
    expect(await read('.env')).to.equal('SECRET=1\n')
    expect(await lstat(join(suite.repo, 'node_modules')).catch(() => 'absent')).to.equal('absent')
    const status = await execa('git', ['status', '--porcelain'], {cwd: suite.repo})
    expect(status.stdout.split('\n').sort()).to.deep.equal([' D gone.txt', ' M edit.txt', ' M run.sh', '?? blob.bin', '?? link', '?? sub/'])

    const again = await cli(['workspace', 'diff', id, '--json'])
    expect((JSON.parse(again.stdout) as {changes: unknown[]}).changes).to.deep.equal([])
    await execa('git', ['checkout', '-q', '--', '.'], {cwd: suite.repo})
    await execa('git', ['clean', '-qfd'], {cwd: suite.repo})
  })

  it('refuses to apply, writing nothing, when the host changed the same file after the sandbox', async () => {
    const id = await sandboxAfter("printf 'one\\nsandbox\\nthree\\n' > edit.txt && echo fresh > fresh.txt")
    await writeFile(join(suite.repo, 'edit.txt'), 'one\nhost\nthree\n')
    const apply = await cli(['workspace', 'apply', id])
    expect(apply.exitCode).to.equal(1)
    expect(apply.stderr).to.contain('the host changed files the sandbox changed too')
    expect(apply.stderr).to.contain('edit.txt (changed on the host since the sandbox started from it)')
    expect(await read('edit.txt')).to.equal('one\nhost\nthree\n')
    expect(await lstat(join(suite.repo, 'fresh.txt')).catch(() => 'absent')).to.equal('absent')
    await execa('git', ['checkout', '-q', '--', '.'], {cwd: suite.repo})
  })

  it('refuses a file the host created since, at the same path', async () => {
    const id = await sandboxAfter('echo sandbox > both.txt')
    await writeFile(join(suite.repo, 'both.txt'), 'host\n')
    const apply = await cli(['workspace', 'apply', id])
    expect(apply.exitCode).to.equal(1)
    expect(apply.stderr).to.contain('both.txt (changed on the host since the sandbox started from it)')
    expect(await read('both.txt')).to.equal('host\n')
    await execa('git', ['clean', '-qf'], {cwd: suite.repo})
  })

  it('lists risky paths and writes nothing without --force; writes them with --force', async () => {
    const id = await sandboxAfter("mkdir -p .github/workflows && echo 'on: push' > .github/workflows/ci.yml && echo ok > plain.txt")
    const stat = await cli(['workspace', 'diff', id, '--stat'])
    expect(stat.stdout).to.contain('A .github/workflows/ci.yml  (risky: CI workflows run with the repository secrets)\nA plain.txt\n')
    const refused = await cli(['workspace', 'apply', id])
    expect(refused.exitCode).to.equal(1)
    expect(refused.stderr).to.contain('.github/workflows/ci.yml (added: CI workflows run with the repository secrets)')
    expect(refused.stderr).to.contain(`cleanroom workspace apply ${id} --force`)
    expect(await lstat(join(suite.repo, '.github')).catch(() => 'absent')).to.equal('absent')
    expect(await lstat(join(suite.repo, 'plain.txt')).catch(() => 'absent')).to.equal('absent')
    const forced = await cli(['workspace', 'apply', id, '--force'])
    expect(forced.exitCode, forced.stderr).to.equal(0)
    expect(await read('.github/workflows/ci.yml')).to.equal('on: push\n')
    expect(await read('plain.txt')).to.equal('ok\n')
    await execa('git', ['clean', '-qfd'], {cwd: suite.repo})
  })

  it('finds deletions hidden in a directory the sandbox replaced wholesale', async () => {
    await execa('sh', ['-c', 'mkdir -p lib && echo a > lib/a.js && echo b > lib/b.js'], {cwd: suite.repo})
    const id = await sandboxAfter('rm -rf lib && mkdir lib && echo a > lib/a.js')
    const json = JSON.parse((await cli(['workspace', 'diff', id, '--json'])).stdout) as {changes: {path: string; change: string}[]}
    expect(json.changes.map(({path, change}) => `${change} ${path}`)).to.deep.equal(['deleted lib/b.js'])
    await execa('rm', ['-rf', 'lib'], {cwd: suite.repo})
  })

  it('brings back type changes and a file over the text diff limit, as a patch git applies and through apply', async () => {
    await execa('sh', ['-c', 'mkdir -p lib && echo a > lib/a.js && echo b > lib/b.js && echo c > conf && git add -A && git -c user.name=t -c user.email=t@t commit -qm types'], {cwd: suite.repo})
    const id = await sandboxAfter("rm -rf lib && echo now-a-file > lib && rm conf && mkdir conf && echo inner > conf/inner && seq 1 800000 > big.txt")
    const patch = join(suite.home, 'types.patch')
    const diff = await execa('sh', ['-c', `node ${JSON.stringify(join(PROJECT_ROOT, 'bin/run.js'))} workspace diff ${id} > ${patch}`], {cwd: suite.repo, env: suite.env, reject: false})
    expect(diff.exitCode, diff.stderr).to.equal(0)
    expect(await readFile(patch, 'utf8')).to.match(/diff --git a\/big\.txt b\/big\.txt\nnew file mode 100644\nindex 0{40}\.\.[0-9a-f]{40}\nGIT binary patch\nliteral \d+\n/)
    const check = await execa('git', ['apply', '--check', patch], {cwd: suite.repo, reject: false})
    expect(check.exitCode, check.stderr).to.equal(0)
    const apply = await cli(['workspace', 'apply', id])
    expect(apply.exitCode, apply.stderr).to.equal(0)
    expect(apply.stdout).to.contain('applied 6 files to ' + suite.repo + ' (3 added, 3 deleted)')
    expect(await read('lib')).to.equal('now-a-file\n')
    expect(await read('conf/inner')).to.equal('inner\n')
    expect((await readFile(join(suite.repo, 'big.txt'))).equals((await execa('seq', ['1', '800000'], {stripFinalNewline: false, encoding: 'buffer'})).stdout as Buffer)).to.equal(true)
    await execa('sh', ['-c', 'git reset -q --hard HEAD~1 && git clean -qfd'], {cwd: suite.repo})
  })

  it('says when nothing changed', async () => {
    const id = await sandboxAfter('true')
    const diff = await cli(['workspace', 'diff', id])
    expect(diff.exitCode).to.equal(0)
    expect(diff.stdout).to.equal('')
    const apply = await cli(['workspace', 'apply', id])
    expect(apply.stdout).to.contain('nothing to apply')
  })
})
