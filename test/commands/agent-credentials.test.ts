import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {spawn as spawnPty} from '@lydell/node-pty'

import {BACKENDS, requireBackend} from '../conformance/backends.js'
import {FakeModelApi} from '../credentials/fake-apis.js'
import {RUN_SCRIPT} from '../helpers/cli.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'

describe('cleanroom agent <name>: what credentials a run gets (CLI, real sandboxes)', function () {
  this.timeout(60_000)
  let api: FakeModelApi
  const suite = cliRepoSuite('cleanroom-agent-creds-', async ({home, repo}) => {
    api = await FakeModelApi.start()
    await mkdir(join(home, '.config/cleanroom'), {recursive: true})
    await writeFile(
      join(home, '.config/cleanroom/config.yaml'),
      `credentials:
  grant: [team-api]
  routes:
    team-api:
      upstream: http://127.0.0.1:${api.port}
      header: authorization
      format: Bearer {}
      secret: {env: TEAM_TOKEN}
      env: {TEAM_API_URL: "{url}", TEAM_API_TOKEN: "{phantom}"}
agents:
  keyed:
    command: >-
      sh -c 'curl -sS "$KEYED_URL/v1/hello" -H "x-api-key: $KEYED_TOKEN"' sh
    gateway:
      routes:
        - name: keyed
          upstream: http://127.0.0.1:${api.port}
          header: x-api-key
          format: "{}"
          secret: {env: KEYED_API_KEY}
          env: {KEYED_URL: "{url}", KEYED_TOKEN: "{phantom}"}
  keyed-tty:
    command: >-
      sh -c 'test -t 0 && test -t 1 && echo "TTY $(stty size)"; curl -sS "$KEYED_URL/v1/tty" -H "x-api-key: $KEYED_TOKEN"; echo; test -n "$KEYED_API_KEY" || echo no-key-here' sh
    gateway:
      routes:
        - name: keyed
          upstream: http://127.0.0.1:${api.port}
          header: x-api-key
          format: "{}"
          secret: {env: KEYED_API_KEY}
          env: {KEYED_URL: "{url}", KEYED_TOKEN: "{phantom}", KEYED_API_KEY: ""}
  copier:
    command: cat
    credentials:
      - source: ~/.fake/token
        target: ~/.fake/token
`,
    )
    await mkdir(join(home, '.fake'))
    await writeFile(join(home, '.fake/token'), 'secret-token\n', {mode: 0o600})
    await writeFile(join(repo, 'cleanroom.yaml'), `version: 1\nsandbox:\n  network:\n    allow: ["127.0.0.1:${api.port}"]\n`)
    const requesting = join(home, 'requesting')
    await mkdir(requesting)
    await execa('git', ['init', '-q', requesting])
    await writeFile(join(requesting, 'cleanroom.yaml'), `version: 1\nsandbox:\n  credentials: [team-api, deploy-key]\n  network:\n    allow: ["127.0.0.1:${api.port}"]\n`)
  })
  after(async () => api?.close())
  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]

  it('says which credential the agent gets and from where; the agent reaches its API with it while holding a phantom', async () => {
    api.requests.length = 0
    const result = await runWith({KEYED_API_KEY: 'real-key-42'}, ['agent', 'keyed'])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stderr).to.contain('cleanroom: keyed gets keyed through the credential gateway (KEYED_API_KEY from your environment; upstream http://127.0.0.1:')
    expect(JSON.parse(result.stdout), 'the fake model API answered').to.deep.equal({data: []})
    expect(api.requests[0]!.url).to.equal('/v1/hello')
    expect(api.requests[0]!.headers['x-api-key']).to.equal('real-key-42')
    const env = await suite.cli(['exec', '--sandbox-id', sandboxOf(result.stderr)!, '--', 'sh', '-c', 'printf %s "$KEYED_TOKEN"'])
    expect(env.stdout).to.match(/^[A-Za-z0-9_-]{43}$/)
    await suite.cli(['sandbox', 'rm', sandboxOf(result.stderr)!])
  })

  for (const backend of BACKENDS) {
    it(`runs an agent with --backend ${backend} on the user's terminal: its size, the gateway's key upstream, a phantom inside`, async () => {
      await requireBackend(backend)
      api.requests.length = 0
      const pty = spawnPty(process.execPath, [RUN_SCRIPT, 'agent', '--backend', backend, 'keyed-tty'], {cols: 91, rows: 21, cwd: suite.repo, env: {...suite.env, TERM: 'xterm', NO_COLOR: '1', KEYED_API_KEY: 'real-key-tty'}})
      let screen = ''
      pty.onData((data) => {
        screen += data
      })
      const exitCode = await new Promise<number>((resolve) => pty.onExit((event) => resolve(event.exitCode)))
      expect(exitCode, screen).to.equal(0)
      expect(screen).to.contain('TTY 21 91\r\n{"data":[]}\r\nno-key-here\r\n')
      expect(api.requests.map((request) => [request.url, request.headers['x-api-key']])).to.deep.equal([['/v1/tty', 'real-key-tty']])
      const id = sandboxOf(screen)!
      const inspect = JSON.parse((await suite.cli(['sandbox', 'inspect', id, '--json'])).stdout) as {backend: string}
      expect(inspect.backend).to.equal(backend)
      const token = await suite.cli(['exec', '--sandbox-id', id, '--', 'sh', '-c', 'printf %s "$KEYED_TOKEN"'])
      expect(token.stdout).to.match(/^[A-Za-z0-9_-]{43}$/)
      await suite.cli(['sandbox', 'rm', id])
    })
  }

  it('with no key on the host, says how to give one', async () => {
    const result = await suite.cli(['agent', 'keyed'])
    expect(result.stderr).to.contain('cleanroom: keyed: no host credentials found: provide a key for keyed (docs/credentials.md); logging in inside the sandbox works too')
    await suite.cli(['sandbox', 'rm', sandboxOf(result.stderr)!])
  })

  it('copies the files of an agent with no gateway, with a warning on every run', async () => {
    const result = await suite.cli(['agent', 'copier', '--', '/home/cleanroom/.fake/token'])
    expect(result.stdout).to.equal('secret-token')
    expect(result.stderr).to.contain('cleanroom: warning: copier runs with credentials: copy: ~/.fake/token is copied into the sandbox, where anything that runs there can read it')
    await suite.cli(['sandbox', 'rm', sandboxOf(result.stderr)!])
  })

  it('gives a sandbox the routes its repository asks for only when the runtime config grants them', async () => {
    api.requests.length = 0
    const result = await runWith({TEAM_TOKEN: 'team-secret'}, ['exec', '-c', join(suite.home, 'requesting'), '--', 'sh', '-c', 'curl -sS "$TEAM_API_URL/v1/items" -H "Authorization: Bearer $TEAM_API_TOKEN"; echo; printf %s "$TEAM_API_TOKEN" | wc -c'])
    expect(result.exitCode, result.stderr).to.equal(0)
    expect(result.stderr).to.contain('cleanroom: cleanroom.yaml asks for credential route deploy-key: not given (add it to credentials.grant in config.yaml, and define it under credentials.routes)')
    expect(result.stderr).to.contain('cleanroom: the sandbox gets team-api through the credential gateway (TEAM_TOKEN from your environment;')
    expect(result.stdout.trim().split('\n').at(-1)).to.equal('43')
    expect(api.requests.map((request) => [request.url, request.headers.authorization])).to.deep.equal([['/v1/items', 'Bearer team-secret']])
  })

  function runWith(env: Record<string, string>, args: string[]) {
    const saved = {...suite.env}
    Object.assign(suite.env, env)
    return suite.cli(args).finally(() => {
      for (const key of Object.keys(suite.env)) delete suite.env[key]
      Object.assign(suite.env, saved)
    })
  }
})
