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
    expect(screen).to.contain('TTY-2')
    expect(screen).to.contain('SIZE=20 90')
    const id = /sandbox_id=(cr_\w+)/.exec(screen)?.[1]
    if (id) await cli(['sandbox', 'rm', id])
  })

  it('lists the agents when no name is given', async () => {
    const result = await cli(['agent'])
    expect(result.stdout).to.match(/^echo-agent {2}\(runtime config /m)
  })
})
