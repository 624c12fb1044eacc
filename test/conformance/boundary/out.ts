import {spawn as spawnPty} from '@lydell/node-pty'
import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {chmod, lstat, mkdir, readFile, stat, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {BackendName} from '../../../src/config/schema.js'
import {cliRepoSuite} from '../../helpers/cli-repo.js'
import {PROJECT_ROOT} from '../../helpers/cli.js'
import {snapshotTree} from '../../helpers/snapshot.js'
import {tempDirs} from '../../helpers/tmp.js'
import {RecordingTarget} from '../targets.js'

/** Characters a terminal acts on, as a sandbox would put them in a name: a title change, concealed text, a C1 CSI, a right-to-left override. */
const HOSTILE = {
  shell: '\\033]0;pwned\\007\\033[8m\\302\\233\\342\\200\\256',
  name: '\u001b]0;pwned\u0007\u001b[8m\u009b\u202e',
  raw: ['\u001b]0;pwned', '\u001b[8m', '\u009b', '\u202e'],
  shown: '\\x1b]0;pwned\\x07\\x1b[8m\\x9b\\u{202e}',
}

function expectNoRawSequences(output: string, label: string): void {
  for (const raw of HOSTILE.raw) expect(output.includes(raw), `${label} prints ${JSON.stringify(raw)} raw:\n${output}`).to.equal(false)
}

/** What comes out of a sandbox of `backend`: copies, workspace changes, and names printed on the host. */
export function comingOut(backend: BackendName): void {
  describe('what comes out', function () {
    this.timeout(120_000)
    const suite = cliRepoSuite('cleanroom-boundary-')
    const dirs = tempDirs('cleanroom-boundary-host-')
    after(() => dirs.cleanup())
    const cli = (args: string[], cwd?: string) => suite.cli(args, cwd === undefined ? {} : {cwd})
    let repoCount = 0

    /** A committed repository of its own for one test, under the suite's home. */
    async function newRepo(files: Record<string, string> = {'README.md': 'readme\n'}): Promise<string> {
      const repo = join(suite.home, `repo-${++repoCount}`)
      await mkdir(repo)
      await execa('git', ['init', '-q', repo])
      for (const [path, content] of Object.entries(files)) {
        await mkdir(join(repo, path, '..'), {recursive: true})
        await writeFile(join(repo, path), content)
      }
      await execa('git', ['add', '-A'], {cwd: repo})
      await execa('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', 'commit', '-qm', 'init'], {cwd: repo})
      return repo
    }

    /** A kept sandbox of `repo` in which `script` has run. */
    async function sandboxAfter(repo: string, script: string): Promise<string> {
      const result = await cli(['exec', '--keep', '--backend', backend, '--', 'sh', '-c', script], repo)
      expect(result.exitCode, result.stderr).to.equal(0)
      return /sandbox_id=(cr_\w+)/.exec(result.stderr)![1]!
    }

    describe('copying in and back out', () => {
      it('cp copies in and back out from the CLI: bytes and modes kept, owned by the sandbox user inside, by the caller outside', async () => {
        const id = await sandboxAfter(await newRepo(), 'true')
        const source = await dirs.make()
        await mkdir(join(source, 'bin'))
        await writeFile(join(source, 'bin/run.sh'), '#!/bin/sh\necho ran "$@"\n', {mode: 0o755})
        await writeFile(join(source, 'private'), 'secret\n', {mode: 0o600})
        const copiedIn = await cli(['cp', source, `${id}:/workspace/tools`])
        expect(copiedIn.exitCode, copiedIn.stderr).to.equal(0)
        const inside = await cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'cd /workspace/tools && stat -c "%n %a %U" bin bin/run.sh private && cat private && bin/run.sh here && bin/run.sh there > made'])
        expect(inside.exitCode, inside.stderr).to.equal(0)
        expect(inside.stdout).to.equal('bin 755 cleanroom\nbin/run.sh 755 cleanroom\nprivate 600 cleanroom\nsecret\nran here')
        const dest = join(await dirs.make(), 'back')
        const copiedOut = await cli(['cp', `${id}:/workspace/tools`, dest])
        expect(copiedOut.exitCode, copiedOut.stderr).to.equal(0)
        expect(await readFile(join(dest, 'made'), 'utf8')).to.equal('ran there\n')
        expect(await readFile(join(dest, 'bin/run.sh'), 'utf8')).to.equal('#!/bin/sh\necho ran "$@"\n')
        const modes = await Promise.all(['bin/run.sh', 'private', 'made'].map(async (path) => (await stat(join(dest, path))).mode & 0o7777))
        expect(modes).to.deep.equal([0o755, 0o600, 0o644])
        const owners = await Promise.all(['bin', 'bin/run.sh', 'private', 'made'].map(async (path) => (await stat(join(dest, path))).uid))
        expect(owners).to.deep.equal([process.getuid!(), process.getuid!(), process.getuid!(), process.getuid!()])
      })
    })

    describe('copying out', () => {
      it('drops setuid and setgid bits the sandbox set', async () => {
        const id = await sandboxAfter(await newRepo(), 'mkdir -p out/shared && cp /bin/true out/suid && chmod 4755 out/suid && chmod 2755 out/shared && stat -c %a out/suid out/shared')
        const inside = await cli(['exec', '--sandbox-id', id, '--', 'stat', '-c', '%a', '/workspace/out/suid', '/workspace/out/shared'])
        expect(inside.stdout.split('\n'), 'the sandbox could set the bits (else this test proves nothing)').to.deep.equal(['4755', '2755'])
        const dest = join(await dirs.make(), 'copy')
        const copied = await cli(['cp', `${id}:/workspace/out`, dest])
        expect(copied.exitCode, copied.stderr).to.equal(0)
        expect((await stat(join(dest, 'suid'))).mode & 0o7777).to.equal(0o755)
        expect((await stat(join(dest, 'shared'))).mode & 0o7777).to.equal(0o755)
      })

      it('refuses a symlink that climbs out through a link to ., and writes no link', async () => {
        const id = await sandboxAfter(await newRepo(), 'mkdir out && echo x > out/file && ln -s . out/s && ln -s s/s/s/../../../../etc/shadow out/link')
        const parent = await dirs.make()
        await writeFile(join(parent, 'bystander'), 'host\n')
        const before = await snapshotTree(parent)
        const copied = await cli(['cp', `${id}:/workspace/out`, join(parent, 'copy')])
        expect(copied.exitCode).to.equal(1)
        expect(copied.stderr).to.contain('refusing symlink copy/link -> s/s/s/../../../../etc/shadow: followed, it leads outside the copy')
        expect(await lstat(join(parent, 'copy/link')).catch(() => 'absent')).to.equal('absent')
        const after = await snapshotTree(parent)
        delete after.copy
        delete after['copy/file']
        expect(after).to.deep.equal(before)
      })

      it('never follows a symlink already at the destination: a directory entry neither chmods nor writes into its target', async () => {
        const id = await sandboxAfter(await newRepo(), 'mkdir -p out/sub && chmod 777 out/sub && echo planted > out/sub/file')
        const victim = await dirs.make()
        await chmod(victim, 0o700)
        const victimBefore = await snapshotTree(victim)
        // An earlier copy into `dest` left `out`, and something left `out/sub` pointing at the victim.
        const dest = await dirs.make()
        await mkdir(join(dest, 'out'))
        await symlink(victim, join(dest, 'out/sub'))
        const copied = await cli(['cp', `${id}:/workspace/out`, dest])
        expect(copied.exitCode).to.equal(1)
        expect(copied.stderr).to.contain('it is a symlink or not a directory')
        expect((await stat(victim)).mode & 0o7777).to.equal(0o700)
        expect(await snapshotTree(victim)).to.deep.equal(victimBefore)
      })

      it('prints a refused name terminal-safe', async () => {
        const id = await sandboxAfter(await newRepo(), `mkdir out && ln -s /etc "out/$(printf 'x${HOSTILE.shell}')"`)
        const copied = await cli(['cp', `${id}:/workspace/out`, join(await dirs.make(), 'copy')])
        expect(copied.exitCode).to.equal(1)
        expectNoRawSequences(copied.stderr, 'cp')
        expect(copied.stderr).to.contain(`copy/x${HOSTILE.shown} -> /etc`)
      })
    })

    describe('bringing changes back', () => {
      it('never reads host files through a directory the workload swaps for a symlink while the diff runs', async () => {
        const hostDir = await dirs.make()
        await chmod(hostDir, 0o755)
        const secret = `HOST-SECRET-${randomBytes(8).toString('hex')}`
        await writeFile(join(hostDir, 'secret.txt'), `${secret}\n`, {mode: 0o644})
        const repo = await newRepo()
        const id = await sandboxAfter(repo, 'mkdir d && echo sandbox-data > d/secret.txt')
        const swapper = cli(['exec', '--sandbox-id', id, '--', 'sh', '-c',
          `end=$(($(date +%s)+8)); while [ $(date +%s) -lt $end ]; do mv d d.real && ln -s ${hostDir} d && sleep 0.02 && rm d && mv d.real d && sleep 0.02; done`])
        let swapping = true
        void swapper.finally(() => {
          swapping = false
        })
        const outputs: string[] = []
        try {
          for (let i = 0; i < 24 && (swapping || i < 4); i++) {
            const diff = await cli(['workspace', 'diff', id], repo)
            const json = await cli(['workspace', 'diff', id, '--json'], repo)
            outputs.push(diff.stdout, diff.stderr, json.stdout, json.stderr)
          }
        } finally {
          expect((await swapper).exitCode).to.equal(0)
        }
        for (const output of outputs) expect(output).not.to.contain(secret)
        expect(outputs.some((output) => output.includes('+sandbox-data')), 'some diff saw the sandbox file').to.equal(true)
      })

      it("never runs git-lfs: a .lfsconfig and pointer file from the sandbox make no request to the URL it chose", async () => {
        const lfs = await execa('git', ['lfs', 'install'], {env: suite.env, reject: false})
        if (lfs.exitCode !== 0) expect.fail(`this test needs git-lfs on the host (apt-get install git-lfs): ${lfs.stderr}`)
        const target = await RecordingTarget.http('lfs')
        try {
          // First the configuration (risky: applied with --force), then, from a sandbox made after it, the pointer file.
          const repo = await newRepo()
          const configure = await sandboxAfter(repo, [
            `printf '[lfs]\\n\\turl = http://127.0.0.1:${target.port}/lfs\\n' > .lfsconfig`,
            "printf '*.bin filter=lfs diff=lfs merge=lfs -text\\n' > .gitattributes",
          ].join(' && '))
          expect((await cli(['workspace', 'apply', configure, '--force'], repo)).exitCode).to.equal(0)
          const id = await sandboxAfter(repo, `printf 'version https://git-lfs.github.com/spec/v1\\noid sha256:${'ab'.repeat(32)}\\nsize 12\\n' > data.bin`)
          expect((await cli(['workspace', 'diff', id], repo)).exitCode).to.equal(0)
          const applied = await cli(['workspace', 'apply', id], repo)
          expect(applied.exitCode, applied.stderr).to.equal(0)
          expect(await readFile(join(repo, 'data.bin'), 'utf8')).to.match(/^version https:\/\/git-lfs/)
          await sleep(200)
          expect(target.connections, 'connections to the LFS URL').to.deep.equal([])
          // Control: git with its filters on these same files does call the URL, so the trap above would have caught it.
          await execa('git', ['lfs', 'smudge', 'data.bin'], {cwd: repo, env: suite.env, input: await readFile(join(repo, 'data.bin')), reject: false, timeout: 30_000})
          expect(target.connections.length, 'git-lfs itself reaches the URL').to.be.greaterThan(0)
        } finally {
          await target.close()
        }
      })

      it('writes nothing when the write fails part-way, and says so', async () => {
        const repo = await newRepo({'a.txt': 'base\n', 'locked/keep.txt': 'k\n'})
        const id = await sandboxAfter(repo, 'echo sandbox > a.txt && echo b > locked/b.txt && echo z > z.txt')
        const before = await snapshotTree(repo, ['.git'])
        const lock = await execa('chattr', ['+i', join(repo, 'locked')], {reject: false})
        if (lock.exitCode !== 0) expect.fail(`this test needs chattr +i on the temp directory's filesystem: ${lock.stderr}`)
        try {
          const applied = await cli(['workspace', 'apply', id], repo)
          expect(applied.exitCode).to.equal(1)
          expect(applied.stderr).to.contain('nothing was applied')
          expect(await snapshotTree(repo, ['.git'])).to.deep.equal(before)
        } finally {
          await execa('chattr', ['-i', join(repo, 'locked')])
        }
      })

      it('refuses, without --force, a layout git would take for a repository; no fsmonitor runs', async () => {
        const marker = join(await dirs.make(), 'fsmonitor-ran')
        const repo = await newRepo()
        const id = await sandboxAfter(repo, [
          'mkdir -p vendor/lib/objects/info vendor/lib/refs/heads',
          "echo 'ref: refs/heads/main' > vendor/lib/HEAD",
          `printf '[core]\\n\\tbare = true\\n\\tfsmonitor = "touch ${marker}"\\n' > vendor/lib/config`,
          'touch vendor/lib/objects/info/packs vendor/lib/refs/heads/.keep',
        ].join(' && '))
        const before = await snapshotTree(repo, ['.git'])
        const listed = JSON.parse((await cli(['workspace', 'diff', id, '--json'], repo)).stdout) as {changes: {path: string; risky: boolean; risk?: string}[]}
        expect(listed.changes.map((change) => [change.path, change.risky])).to.deep.equal([
          ['vendor/lib/HEAD', true], ['vendor/lib/config', true], ['vendor/lib/objects/info/packs', true], ['vendor/lib/refs/heads/.keep', true],
        ])
        const applied = await cli(['workspace', 'apply', id], repo)
        expect(applied.exitCode).to.equal(1)
        expect(applied.stderr).to.contain('vendor/lib/config (added: in vendor/lib, which git would take for a repository')
        expect(await snapshotTree(repo, ['.git'])).to.deep.equal(before)
        // What a shell prompt does on cd: git status there.
        await execa('git', ['status'], {cwd: join(repo, 'vendor'), env: suite.env, reject: false}).catch(() => undefined)
        expect(await lstat(marker).catch(() => 'absent')).to.equal('absent')
      })

      it('refuses, without --force, symlinks that lead outside the repository and files that configure tools', async () => {
        const repo = await newRepo()
        const id = await sandboxAfter(repo, [
          'ln -s /root/.ssh/id_ed25519 key',
          'mkdir -p a/b && ln -s ../../../../etc a/b/etc',
          'ln -s . s && ln -s s/s/../escape climb',
          'echo x > Jenkinsfile && echo x > .MCP.json && echo x > .yarnrc.yml && echo x > AGENTS.md && echo x > .GitAttributes',
          'echo fine > plain.txt',
        ].join(' && '))
        const before = await snapshotTree(repo, ['.git'])
        const stat = await cli(['workspace', 'diff', id, '--stat'], repo)
        expect(stat.stdout).to.contain('A key  (risky: a symlink leading outside the repository (-> /root/.ssh/id_ed25519))\n')
        const applied = await cli(['workspace', 'apply', id], repo)
        expect(applied.exitCode).to.equal(1)
        for (const line of [
          'key (added: a symlink leading outside the repository (-> /root/.ssh/id_ed25519))',
          'a/b/etc (added: a symlink leading outside the repository (-> ../../../../etc))',
          'climb (added: a symlink leading outside the repository (-> s/s/../escape))',
          'Jenkinsfile (added: CI pipelines)', '.MCP.json (added: MCP servers an agent starts)', '.yarnrc.yml (added: yarnPath runs any file as yarn)',
          'AGENTS.md (added: instructions agents follow)', '.GitAttributes (added: git filters and diff drivers run on the host)',
        ]) expect(applied.stderr).to.contain(line)
        expect(applied.stderr).not.to.contain('plain.txt')
        expect(await snapshotTree(repo, ['.git'])).to.deep.equal(before)
      })

      it('decides conflicts by content: a file restored with git checkout takes the change, an edited one never does, even with --force', async () => {
        const repo = await newRepo({'edit.txt': 'one\ntwo\n', 'other.txt': 'o\n'})
        const id = await sandboxAfter(repo, "printf 'one\\nTWO\\n' > edit.txt && echo O > other.txt")
        await writeFile(join(repo, 'edit.txt'), 'host edit\n')
        await writeFile(join(repo, 'other.txt'), 'host edit\n')
        await execa('git', ['checkout', '--', 'edit.txt'], {cwd: repo})
        const refused = await cli(['workspace', 'apply', id, '--force'], repo)
        expect(refused.exitCode).to.equal(1)
        expect(refused.stderr).to.contain('other.txt (changed on the host since the sandbox started from it)')
        expect(refused.stderr).not.to.contain('edit.txt (')
        expect(await readFile(join(repo, 'edit.txt'), 'utf8')).to.equal('one\ntwo\n')
        await execa('git', ['checkout', '--', 'other.txt'], {cwd: repo})
        const applied = await cli(['workspace', 'apply', id], repo)
        expect(applied.exitCode, applied.stderr).to.equal(0)
        expect(await readFile(join(repo, 'edit.txt'), 'utf8')).to.equal('one\nTWO\n')
        expect(await readFile(join(repo, 'other.txt'), 'utf8')).to.equal('O\n')
      })

      it('prints sandbox names terminal-safe in diff --stat, the apply refusal and the apply prompt', async () => {
        const repo = await newRepo()
        const id = await sandboxAfter(repo, `echo x > "$(printf 'x${HOSTILE.shell}y.txt')" && mkdir -p .github/workflows && echo on > .github/workflows/ci.yml`)
        const stat = await cli(['workspace', 'diff', id, '--stat'], repo)
        expectNoRawSequences(stat.stdout + stat.stderr, 'diff --stat')
        expect(stat.stdout).to.contain(`A x${HOSTILE.shown}y.txt`)
        const json = await cli(['workspace', 'diff', id, '--json'], repo)
        expectNoRawSequences(json.stdout, 'diff --json')
        expect((JSON.parse(json.stdout) as {changes: {path: string}[]}).changes.map((change) => change.path)).to.include(`x${HOSTILE.name}y.txt`)
        const refused = await cli(['workspace', 'apply', id], repo)
        expectNoRawSequences(refused.stdout + refused.stderr, 'apply')

        const pty = spawnPty(process.execPath, [join(PROJECT_ROOT, 'bin/run.js'), 'workspace', 'apply', id], {cols: 200, rows: 40, cwd: repo, env: {...suite.env, TERM: 'xterm'}})
        let screen = ''
        pty.onData((data) => {
          screen += data
        })
        const exited = new Promise<number>((resolve) => pty.onExit(({exitCode}) => resolve(exitCode)))
        try {
          for (let i = 0; i < 400 && !screen.includes('Apply them too? [y/N]'); i++) await sleep(25)
          expect(screen).to.contain('Apply them too? [y/N]')
          pty.write('n\r')
          expect(await exited).to.equal(1)
        } finally {
          pty.kill()
        }
        expectNoRawSequences(screen, 'the apply prompt')
        expect(screen).to.contain('.github/workflows/ci.yml (added: CI workflows run with the repository secrets)')
        expect(await lstat(join(repo, '.github')).catch(() => 'absent')).to.equal('absent')
      })

      it('prints host names a workload sent over SOCKS terminal-safe in the egress log', async () => {
        const id = await sandboxAfter(await newRepo(), 'true')
        const socks = [
          "const s = require('net').connect(3128, '127.0.0.1'); let step = 0",
          's.on("connect", () => s.write(Buffer.from([5, 1, 0])))',
          `s.on("data", () => { if (step++ === 0) { const h = Buffer.from("evil${HOSTILE.raw.map((raw) => JSON.stringify(raw).slice(1, -1)).join('')}.example"); s.write(Buffer.concat([Buffer.from([5, 1, 0, 3, h.length]), h, Buffer.from([1, 187])])) } else s.end() })`,
          's.on("close", () => process.exit(0)); s.on("error", () => process.exit(0))',
        ].join('; ')
        expect((await cli(['exec', '--sandbox-id', id, '--', 'node', '-e', socks])).exitCode).to.equal(0)
        let logs = await cli(['sandbox', 'logs', id, '--egress'])
        for (let i = 0; i < 40 && !logs.stdout.includes('evil'); i++) {
          await sleep(50)
          logs = await cli(['sandbox', 'logs', id, '--egress'])
        }
        expect(logs.stdout).to.contain('evil\\x1b]0;pwned')
        expectNoRawSequences(logs.stdout, 'sandbox logs --egress')
        const json = await cli(['sandbox', 'logs', id, '--egress', '--json'])
        expectNoRawSequences(json.stdout, 'sandbox logs --egress --json')
        expect(json.stdout).to.contain('evil\\u001b]0;pwned\\u001b[8m\\u009b\\u202e.example')
      })
    })
  })
}
