import {spawn as spawnPty} from '@lydell/node-pty'
import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {PROJECT_ROOT} from '../helpers/cli.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'

const CONFIG = `agents:
  echo-agent:
    description: prints its arguments, one per line
    command: printf '%s\\n'
    credentials:
      - source: ~/.fake/token
        target: ~/.fake/token
      - source: ~/.codex/config.toml
        target: ~/.codex/config.toml
        transform: codex-trust
    network:
      - host: api.fake.test
        ports: [443]
        reason: the fake agent's API
    env:
      FAKE_MODE: sandboxed
  ghost:
    command: no-such-agent-binary --flag
  tty-check:
    command: sh -c 'test -t 0 && echo "TTY-$((1+1))"; stty size | sed "s/^/SIZE=/"' sh
  probe:
    command: printf '%s\\0'
  env-probe:
    command: env
  broken-credential:
    command: 'true'
    credentials:
      - source: /proc/self/mem
        target: ~/mem
  reach-out:
    command: sh -c 'for url in https://blocked.example/a https://blocked.example/b http://other.example:8080/; do curl -s -o /dev/null --max-time 10 "$url"; done; echo done' sh
`

describe('cleanroom agent <name> (CLI, real sandboxes)', function () {
  this.timeout(60_000)
  const suite = cliRepoSuite('cleanroom-agent-', async ({home, repo}) => {
    await mkdir(join(home, '.config/cleanroom'), {recursive: true})
    await writeFile(join(home, '.config/cleanroom/config.yaml'), CONFIG)
    await mkdir(join(home, '.fake'))
    await writeFile(join(home, '.fake/token'), 'secret-token\n', {mode: 0o600})
    await mkdir(join(home, '.codex'))
    await writeFile(join(home, '.codex/config.toml'), 'model = "o4"\n', {mode: 0o600})
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    allow: ["api.github.com:443"]\n')
  })
  const cli = (args: string[], cwd?: string) => suite.cli(args, {cwd})
  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]

  it('runs the agent with its arguments intact and in order, keeps the sandbox, and says what it may reach', async () => {
    const result = await cli(['agent', 'echo-agent', '--', 'exec', 'echo-agent', "it's", '$PATH', '', '--json', 'exec'])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.equal("exec\necho-agent\nit's\n$PATH\n\n--json\nexec")
    expect(result.stderr).to.contain('echo-agent may reach: api.fake.test:443')
    const id = sandboxOf(result.stderr)
    expect(id).to.match(/^cr_/)
    const inspect = JSON.parse((await cli(['sandbox', 'inspect', id!, '--json'])).stdout) as {status: string; policy: {allow: {host: string}[]}}
    expect(inspect.status).to.equal('ready')
    expect(inspect.policy.allow.map((rule) => rule.host)).to.deep.equal(['api.fake.test', 'api.github.com'])
  })

  it('copies the credentials in before the agent starts: bytes and mode kept, Codex trust added once', async () => {
    const first = await cli(['agent', 'echo-agent', '--', 'first'])
    const id = sandboxOf(first.stderr)!
    await cli(['agent', '--sandbox-id', id, 'echo-agent', '--', 'again'])
    const check = await cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'stat -c %a ~/.fake/token; cat ~/.fake/token; grep -c "projects.\\"/workspace\\"" ~/.codex/config.toml; echo "$FAKE_MODE"'])
    expect(check.stdout).to.equal('600\nsecret-token\n1\n')
    const withEnv = await cli(['agent', '--sandbox-id', id, 'echo-agent', '--', '$FAKE_MODE'])
    expect(withEnv.stdout).to.equal('$FAKE_MODE')
  })

  it('exits 127 with the message when the agent is not there', async () => {
    const result = await cli(['agent', 'ghost'])
    expect(result.exitCode).to.equal(127)
    expect(result.stderr).to.contain('cleanroom: agent command not found: ghost')
  })

  it('does not read the policy with --sandbox-id: a broken cleanroom.yaml does not stop it', async () => {
    const id = sandboxOf((await cli(['agent', 'echo-agent', '--', 'x'])).stderr)!
    const broken = join(suite.home, 'broken')
    await mkdir(broken)
    await writeFile(join(broken, 'cleanroom.yaml'), 'version: 7\nnonsense: [\n')
    const result = await cli(['agent', '--sandbox-id', id, 'echo-agent', '--', 'still works'], broken)
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.equal('still works')
    expect(result.stderr).not.to.contain('sandbox_id=')
  })

  it('refuses --dangerously-allow-all with --sandbox-id, and an unknown agent with the list', async () => {
    const both = await cli(['agent', '--dangerously-allow-all', '--sandbox-id', 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA', 'echo-agent'])
    expect(both.exitCode).to.equal(2)
    expect(both.stderr).to.contain('--dangerously-allow-all cannot be used with --sandbox-id')
    const unknown = await cli(['agent', 'nope'])
    expect(unknown.exitCode).to.equal(2)
    expect(unknown.stderr).to.contain('unknown agent "nope"')
    expect(unknown.stderr).to.contain('codex')
  })

  it('runs the agent on a terminal when there is one, with its size', async () => {
    const pty = spawnPty(process.execPath, [join(PROJECT_ROOT, 'bin/run.js'), 'agent', 'tty-check'], {cols: 90, rows: 20, cwd: suite.repo, env: {...suite.env, TERM: 'xterm'}})
    let screen = ''
    pty.onData((data) => {
      screen += data
    })
    const exitCode = await new Promise<number>((resolve) => pty.onExit((event) => resolve(event.exitCode)))
    expect(exitCode, screen).to.equal(0)
    expect(screen).to.contain('TTY-2\r\nSIZE=20 90\r\n')
    expect(screen, 'the sandbox terminal sends \\r\\n; the user\'s must not add another \\r').not.to.contain('\r\r\n')
    const id = /sandbox_id=(cr_\w+)/.exec(screen)?.[1]
    if (id) await cli(['sandbox', 'rm', id])
  })

  describe('the agent gets every word after its name, as typed', () => {
    let id = ''
    before(async () => {
      id = sandboxOf((await cli(['agent', 'probe'])).stderr)!
    })

    // What followed `cleanroom agent` (cleanroom's flags go first), and the words the agent received.
    const lines: [string[], string[]][] = [
      [['probe', 'a', 'a', 'b', 'a', 'b'], ['a', 'a', 'b', 'a', 'b']],
      [['probe', '--yolo', '--model', 'gpt-5'], ['--yolo', '--model', 'gpt-5']],
      [['probe', '--help'], ['--help']],
      [['probe', '-c', 'DIR', '--sandbox-id', 'other'], ['-c', 'DIR', '--sandbox-id', 'other']],
      [['--', 'probe', 'a', 'b'], ['a', 'b']],
      [['probe', '--', '--json', 'exec'], ['--json', 'exec']],
      [['probe', '--', '--', 'x'], ['--', 'x']],
      [['probe', "it's", '', '$PATH'], ["it's", '', '$PATH']],
    ]
    for (const [argv, received] of lines) {
      it(`agent --sandbox-id ID ${argv.join(' ')}`, async () => {
        const result = await cli(['agent', '--sandbox-id', id, ...argv])
        expect(result.exitCode, result.stderr).to.equal(0)
        expect(result.stdout.split('\0').slice(0, -1)).to.deep.equal(received)
      })
    }

    it('in a new sandbox too, repeated words in order', async () => {
      const result = await cli(['agent', 'probe', 'a', 'a', 'b', 'a', 'b', '-c', 'x'])
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(result.stdout.split('\0').slice(0, -1)).to.deep.equal(['a', 'a', 'b', 'a', 'b', '-c', 'x'])
    })

    it('says where an unknown flag before the name belongs, ready to paste', async () => {
      const result = await cli(['agent', '--yolo', 'probe', 'x y'])
      expect(result.exitCode).to.equal(2)
      expect(result.stderr).to.contain('Nonexistent flag: --yolo (not a flag of cleanroom agent)')
      expect(result.stderr).to.contain("Try this: Flags for the agent go after its name: cleanroom agent probe --yolo 'x y'")
    })

    it('refuses --update with --sandbox-id: a sandbox keeps the release it was made with', async () => {
      const result = await cli(['agent', '--update', '--sandbox-id', id, 'probe'])
      expect(result.exitCode).to.equal(2)
      expect(result.stderr).to.contain('--update cannot be used with --sandbox-id')
    })
  })

  it('removes the new sandbox when the agent never started, and says why', async () => {
    const before = JSON.parse((await cli(['sandbox', 'ls', '--json'])).stdout) as {sandbox_id: string}[]
    const result = await cli(['agent', 'broken-credential'])
    expect(result.exitCode).to.equal(1)
    expect(result.stderr).to.match(/Error: .*\/proc\/self\/mem/)
    expect(result.stderr).not.to.contain('sandbox_id=')
    const after = JSON.parse((await cli(['sandbox', 'ls', '--json'])).stdout) as {sandbox_id: string}[]
    expect(after.map((sandbox) => sandbox.sandbox_id)).to.deep.equal(before.map((sandbox) => sandbox.sandbox_id))
  })

  it("keeps npm's update notice out of the agent's output", async () => {
    const result = await cli(['agent', 'env-probe'])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stdout).to.match(/^npm_config_update_notifier=false$/m)
    expect(result.stdout).to.match(/^NO_UPDATE_NOTIFIER=1$/m)
  })

  it('names the hosts the egress proxy refused during the run, once each, with the rule that allows them', async () => {
    const result = await cli(['agent', 'reach-out'])
    expect(result.exitCode, result.stderr).to.equal(0)
    const lines = result.stderr.split('\n').filter((line) => line.includes('the egress proxy refused'))
    expect(lines).to.have.length(2)
    expect(lines[0]).to.equal(
      `cleanroom: the egress proxy refused blocked.example:443 (not in the policy); to allow it, add "blocked.example:443" to sandbox.network.allow in cleanroom.yaml (for new sandboxes). Every attempt: cleanroom sandbox logs ${sandboxOf(result.stderr)} --egress`,
    )
    expect(lines[1]).to.contain('refused other.example:8080 (not in the policy)')
  })

  it('treats a 0x0 terminal as one of unknown size (80x24) instead of failing', async () => {
    // `script` without a terminal of its own gives the command a terminal of 0x0, as some CI runners do.
    const {execa} = await import('execa')
    const run = await execa('script', ['-qec', `${process.execPath} ${join(PROJECT_ROOT, 'bin/run.js')} agent tty-check`, '/dev/null'], {cwd: suite.repo, env: {...suite.env, TERM: 'xterm'}, input: '', reject: false})
    expect(run.exitCode, run.stdout).to.equal(0)
    expect(run.stdout).to.contain('SIZE=24 80')
    expect(run.stdout).not.to.contain('\0')
  })

  it('lists the agents when no name is given', async () => {
    const result = await cli(['agent'])
    expect(result.stdout).to.match(/^echo-agent {2}\(runtime config /m)
  })
})
