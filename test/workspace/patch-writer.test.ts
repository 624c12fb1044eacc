import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {chmod, lstat, mkdir, readFile, readlink, symlink, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'

import {DirectoryHandle} from '../../src/util/dir-handle.js'
import {TreeReader} from '../../src/workspace/entry.js'
import {diffLines} from '../../src/workspace/line-diff.js'
import {patchOfPath, quotePath, TEXT_DIFF_LIMIT} from '../../src/workspace/patch-writer.js'
import {tempDirs} from '../helpers/tmp.js'

type Content = string | Buffer | {link: string} | {exec: string}

async function writeTree(root: string, files: Record<string, Content>): Promise<void> {
  for (const [path, content] of Object.entries(files)) {
    await mkdir(dirname(join(root, path)), {recursive: true})
    if (typeof content === 'object' && 'link' in content) await symlink(content.link, join(root, path))
    else if (typeof content === 'object' && 'exec' in content) await writeFile(join(root, path), content.exec, {mode: 0o755})
    else await writeFile(join(root, path), content)
  }
}

/** The patch from `host` to `sandbox` for `paths`, as the daemon writes it. */
async function patchBetween(host: string, sandbox: string, paths: string[]): Promise<Buffer> {
  const a = new TreeReader(await DirectoryHandle.open(host), 'sha1')
  const b = new TreeReader(await DirectoryHandle.open(sandbox), 'sha1')
  const out: Buffer[] = []
  try {
    for (const path of paths.sort()) {
      const change = {path, host: await a.state(path), sandbox: await b.state(path)}
      for await (const chunk of patchOfPath(change, {host: (p, s) => a.content(p, s), sandbox: (p, s) => b.content(p, s)}, 'sha1')) out.push(chunk)
    }
  } finally {
    await a.close()
    await b.close()
  }
  return Buffer.concat(out)
}

const lines = (count: number, change: (i: number) => string = (i) => `line ${i}`) => Array.from({length: count}, (_, i) => `${change(i)}\n`).join('')

describe('workspace patch writer', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-patch-')
  afterEach(() => dirs.cleanup())

  /** Writes both trees, makes the patch, applies it with git to the host tree and checks the result is the sandbox tree. */
  async function roundTrip(before: Record<string, Content>, after: Record<string, Content>): Promise<string> {
    const host = await dirs.make()
    const sandbox = await dirs.make()
    await writeTree(host, before)
    await writeTree(sandbox, after)
    await execa('git', ['init', '-q'], {cwd: host})
    const paths = [...new Set([...Object.keys(before), ...Object.keys(after)])]
    const patch = await patchBetween(host, sandbox, paths)
    const applied = await execa('git', ['apply', '--whitespace=nowarn', '-'], {cwd: host, input: patch, reject: false})
    expect(applied.exitCode, `git apply: ${applied.stderr}\n${patch.toString('utf8').slice(0, 2000)}`).to.equal(0)
    for (const path of paths) {
      const want = after[path]
      const got = await lstat(join(host, path)).catch(() => undefined)
      if (want === undefined) {
        expect(got, `${path} should be gone`).to.equal(undefined)
      } else if (typeof want === 'object' && 'link' in want) {
        expect(await readlink(join(host, path)), path).to.equal(want.link)
      } else {
        const bytes = typeof want === 'object' && 'exec' in want ? Buffer.from(want.exec) : Buffer.from(want)
        expect((await readFile(join(host, path))).equals(bytes), `${path} has the sandbox's bytes`).to.equal(true)
        expect((got!.mode & 0o100) !== 0, `${path} exec bit`).to.equal(typeof want === 'object' && 'exec' in want)
      }
    }
    return patch.toString('utf8')
  }

  it('writes text changes as hunks git applies: several hunks, added and deleted files, no newline at the end', async () => {
    const patch = await roundTrip(
      {'a.txt': lines(40), 'gone.txt': 'bye\n', 'tail.txt': 'x\ny'},
      {'a.txt': lines(40, (i) => (i === 2 || i === 30 ? `changed ${i}` : `line ${i}`)), 'new/file.txt': 'hello\n', 'tail.txt': 'x\nz'},
    )
    expect(patch).to.contain('diff --git a/a.txt b/a.txt\nindex ')
    const aBlock = patch.slice(patch.indexOf('diff --git a/a.txt'), patch.indexOf('diff --git a/gone.txt'))
    expect(aBlock.match(/^@@ /gm)).to.have.length(2)
    expect(patch).to.contain('diff --git a/new/file.txt b/new/file.txt\nnew file mode 100644\n')
    expect(patch).to.contain('diff --git a/gone.txt b/gone.txt\ndeleted file mode 100644\n')
    expect(patch).to.contain('-y\n\\ No newline at end of file\n+z\n\\ No newline at end of file\n')
  })

  it('writes mode changes, symlinks, type changes and empty files', async () => {
    const patch = await roundTrip(
      {'run.sh': '#!/bin/sh\n', link: {link: 'a'}, swap: 'was a file\n', 'empty-gone': ''},
      {'run.sh': {exec: '#!/bin/sh\n'}, link: {link: 'b/c'}, swap: {link: 'run.sh'}, 'empty-new': ''},
    )
    expect(patch).to.contain('diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n')
    expect(patch).to.contain('diff --git a/swap b/swap\ndeleted file mode 100644\n')
    expect(patch).to.contain('diff --git a/swap b/swap\nnew file mode 120000\n')
  })

  it('writes binary files and files over the text limit as binary patches git applies', async () => {
    const big = Buffer.concat([Buffer.from(lines(10)), randomBytes(TEXT_DIFF_LIMIT)])
    const patch = await roundTrip(
      {'blob.bin': Buffer.from([0, 1, 2, 3]), 'big.txt': 'small\n', 'old.bin': Buffer.from([0, 9])},
      {'blob.bin': Buffer.from([0, 1, 2, 4, 0xff]), 'big.txt': big},
    )
    expect(patch).to.match(/diff --git a\/big\.txt b\/big\.txt\nindex [0-9a-f]{40}\.\.[0-9a-f]{40} 100644\nGIT binary patch\nliteral \d+\n/)
    expect(patch).to.contain('diff --git a/old.bin b/old.bin\ndeleted file mode 100644\n')
  })

  it('quotes names as git does, and git applies them', async () => {
    expect(quotePath('a/plain name.txt')).to.equal('a/plain name.txt')
    expect(quotePath('a/tab\there')).to.equal('"a/tab\\there"')
    expect(quotePath('a/été')).to.equal('"a/\\303\\251t\\303\\251"')
    expect(quotePath('a/\u001b[2K"q"\\')).to.equal('"a/\\033[2K\\"q\\"\\\\"')
    await roundTrip({}, {'tab\there': 'x\n', 'été.txt': 'y\n', 'esc\u001b[2K"q"': 'z\n', 'new\nline': 'w\n'})
  })

  it('finds the shortest line edits, and falls back to one replacement past its limit', () => {
    expect(diffLines([1, 2, 3, 4, 5], [1, 9, 3, 4, 5, 6])).to.deep.equal([
      {aStart: 1, aEnd: 2, bStart: 1, bEnd: 2},
      {aStart: 5, aEnd: 5, bStart: 5, bEnd: 6},
    ])
    const a = Array.from({length: 100}, (_, i) => i)
    const b = a.map((value) => (value % 2 === 0 ? value + 1000 : value))
    // The last line (99, odd) is common: only the middle is replaced.
    expect(diffLines(a, b, 10)).to.deep.equal([{aStart: 0, aEnd: 99, bStart: 0, bEnd: 99}])
    expect(diffLines(a, b)).to.have.length(50)
  })

  it('applies a heavily rewritten file through the coarse replacement', async () => {
    await roundTrip({'many.txt': lines(3000)}, {'many.txt': lines(3000, (i) => (i % 2 === 0 ? `even ${i}` : `line ${i}`))})
  })

  it('hashes a file as git does, whatever its permissions', async () => {
    const host = await dirs.make()
    await writeFile(join(host, 'f'), 'x\n')
    await chmod(join(host, 'f'), 0o000)
    const reader = new TreeReader(await DirectoryHandle.open(host), 'sha1')
    try {
      expect((await reader.state('f'))?.oid).to.equal((await execa('git', ['hash-object', '--stdin'], {input: 'x\n'})).stdout)
    } finally {
      await reader.close()
    }
  })
})
