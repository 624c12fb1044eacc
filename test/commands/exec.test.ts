import {spawn as spawnPty} from '@lydell/node-pty'
import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'

const RUN = join(PROJECT_ROOT, 'bin/run.js')

describe('cleanroom exec, console, sandbox, cp (CLI, daemon started on demand)', function () {
  this.timeout(60_000)
  const suite = cliRepoSuite('cleanroom-cli-', async ({repo}) => writeFile(join(repo, 'hello.txt'), 'hi\n'))
  const cli = (args: string[], input?: string) => suite.cli(args, {input})

  it('runs a command in a new sandbox, keeps stdout and stderr apart, and exits with its code', async () => {
    const result = await cli(['exec', '--', 'sh', '-c', 'cat hello.txt; echo oops >&2; exit 7'])
    expect(result.exitCode).to.equal(7)
    expect(result.stdout).to.equal('hi')
    expect(result.stderr).to.contain('oops')
    expect(result.stderr).to.contain('no cleanroom.yaml found')
  })

  for (const code of [0, 1, 127]) {
    it(`exits ${code} when the command does`, async () => {
      const command = code === 127 ? ['no-such-command-anywhere'] : ['sh', '-c', `exit ${code}`]
      expect((await cli(['exec', '--', ...command])).exitCode).to.equal(code)
    })
  }

  it('exits 130 when the command dies of SIGINT', async () => {
    expect((await cli(['exec', '--', 'sh', '-c', 'kill -INT $$'])).exitCode).to.equal(130)
  })

  it('sends the first Ctrl-C to the command and detaches with 130 on the second', async () => {
    const child = execa(process.execPath, [RUN, 'exec', '--', 'sh', '-c', 'trap "echo got-INT" INT; echo started; while :; do sleep 0.1; done'], {cwd: suite.repo, env: suite.env, reject: false})
    let out = ''
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString()
    })
    for (let i = 0; i < 400 && !out.includes('started'); i++) await sleep(25)
    child.kill('SIGINT')
    for (let i = 0; i < 400 && !out.includes('got-INT'); i++) await sleep(25)
    expect(out).to.contain('got-INT')
    child.kill('SIGINT')
    const result = await child
    expect(result.exitCode).to.equal(130)
    expect(result.stderr).to.contain('detached')
  })

  it('pipes stdin through', async () => {
    const result = await cli(['exec', '--', 'cat'], 'abc')
    expect(result).to.deep.include({exitCode: 0, stdout: 'abc'})
  })

  it('passes -e variables and keeps argument order after --', async () => {
    const result = await cli(['exec', '-e', 'GREETING=it\'s $HOME', '--', 'sh', '-c', 'echo "$GREETING" "$@"', 'sh', 'x', '--json', 'x'])
    expect(result.stdout).to.equal("it's $HOME x --json x")
  })

  it('removes the sandbox after exec, keeps it with --keep, and reuses it with --sandbox-id', async () => {
    const before = JSON.parse((await cli(['sandbox', 'ls', '--json'])).stdout) as unknown[]
    await cli(['exec', '--', 'true'])
    expect(JSON.parse((await cli(['sandbox', 'ls', '--json'])).stdout)).to.have.length(before.length)

    const kept = await cli(['exec', '--keep', '--', 'sh', '-c', 'echo state > /workspace/kept'])
    const id = /sandbox_id=(cr_\w+)/.exec(kept.stderr)?.[1]
    expect(id, kept.stderr).to.match(/^cr_/)
    const reused = await cli(['exec', '--sandbox-id', id!, '--', 'cat', '/workspace/kept'])
    expect(reused.stdout).to.equal('state')
    expect((await cli(['sandbox', 'inspect', id!, '--json'])).stdout).to.contain('"status": "ready"')
    expect((await cli(['sandbox', 'rm', id!])).exitCode).to.equal(0)
    const gone = await cli(['sandbox', 'inspect', id!])
    expect(gone.stdout + gone.stderr).to.contain('stopped')
  })

  it('says which sandbox is unknown and how to list them', async () => {
    const result = await cli(['exec', '--sandbox-id', 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA', '--', 'true'])
    expect(result.exitCode).to.equal(1)
    expect(result.stderr).to.contain('no sandbox cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA')
    expect(result.stderr).to.contain('cleanroom sandbox ls')
  })

  it('answers the same with and without the fast start path', async () => {
    const both = async (args: string[], input?: string) => {
      const fast = await suite.cli(args, {input})
      const full = await runCli(args, {cwd: suite.repo, input, env: {...suite.env, CLEANROOM_FAST_START: '0'}})
      return {fast, full}
    }
    const lines: string[][] = [
      ['--version'],
      ['exec', '-e', 'A=1', '--', 'sh', '-c', 'echo "$A"; cat; exit 5'],
      ['exec', '--sandbox-id', 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA', '--', 'true'],
      ['exec', '--'],
      ['exec', '--sandbox-id', 'cr_X', '--keep', '--', 'true'],
      ['exec', '-c', join(suite.repo, 'missing'), '--', 'true'],
    ]
    for (const args of lines) {
      const {fast, full} = await both(args, 'in')
      expect({exitCode: fast.exitCode, stdout: fast.stdout, stderr: fast.stderr}, args.join(' ')).to.deep.equal({exitCode: full.exitCode, stdout: full.stdout, stderr: full.stderr})
    }
  })

  it('sandbox create --json, ls and rm', async () => {
    const created = JSON.parse((await cli(['sandbox', 'create', '--json'])).stdout) as Record<string, string>
    expect(created).to.include.keys('sandbox_id', 'status', 'backend', 'policy_hash', 'created_at')
    expect(created.status).to.equal('ready')
    expect((await cli(['sandbox', 'ls'])).stdout).to.contain(created.sandbox_id)
    expect((await cli(['sandbox', 'rm', created.sandbox_id!])).stdout).to.equal(`removed ${created.sandbox_id}`)
  })

  it('cp copies files in and out with their modes', async () => {
    const id = (await cli(['sandbox', 'create'])).stdout
    const src = join(suite.home, 'in')
    await mkdir(src)
    await writeFile(join(src, 'run.sh'), '#!/bin/sh\necho ran\n', {mode: 0o755})
    expect((await cli(['cp', src, `${id}:/workspace/tools`])).exitCode).to.equal(0)
    expect((await cli(['exec', '--sandbox-id', id, '--', '/workspace/tools/run.sh'])).stdout).to.equal('ran')
    await cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'mkdir out && echo made > out/result'])
    expect((await cli(['cp', `${id}:/workspace/out`, join(suite.home, 'copied')])).exitCode).to.equal(0)
    const {readFile, stat} = await import('node:fs/promises')
    expect(await readFile(join(suite.home, 'copied/result'), 'utf8')).to.equal('made\n')
    expect((await stat(join(suite.home, 'copied/result'))).isFile()).to.equal(true)
    await cli(['sandbox', 'rm', id])
  })

  it('console gives a real terminal: isatty, its size, resizes, Ctrl-C, exit code', async () => {
    const pty = spawnPty(process.execPath, [RUN, 'console', '--', 'sh'], {cols: 100, rows: 30, cwd: suite.repo, env: {...suite.env, TERM: 'xterm'}})
    let screen = ''
    pty.onData((data) => {
      screen += data
    })
    const exited = new Promise<number>((resolve) => pty.onExit(({exitCode}) => resolve(exitCode)))
    const waitFor = async (pattern: RegExp) => {
      for (let i = 0; i < 400 && !pattern.test(screen); i++) await sleep(25)
      expect(screen).to.match(pattern)
    }
    try {
      pty.write('test -t 0 && echo TTY-$((20+1))\n')
      await waitFor(/TTY-21/)
      pty.write('stty size | sed "s/^/SIZE=/"\n')
      await waitFor(/SIZE=30 100/)
      pty.resize(80, 24)
      await sleep(200)
      pty.write('stty size | sed "s/^/SIZE=/"\n')
      await waitFor(/SIZE=24 80/)
      // The program in the foreground gets SIGINT from the sandbox's terminal, not the CLI.
      pty.write(`sh -c 'trap "exit 3" INT; echo WAIT\\ING; sleep 30 & wait'; echo "RC=$?"\n`)
      await waitFor(/WAITING/)
      pty.write('\x03')
      await waitFor(/RC=3/)
      pty.write('exit 5\n')
      expect(await exited).to.equal(5)
    } finally {
      pty.kill()
    }
  })
})
