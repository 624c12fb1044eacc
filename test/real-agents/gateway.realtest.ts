import {expect} from 'chai'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cliRepoSuite} from '../helpers/cli-repo.js'
import {FAKE_COMPLETION, FakeModelApi} from '../credentials/fake-apis.js'

/**
 * The built-in agents for real, with API keys on the host and the credential
 * gateway in between: each agent (fetched from the npm registry through the
 * sandbox's egress, as in agents.realtest.ts) talks to a fake model API on
 * loopback through its route, and must print the fake's completion. The fake
 * must see the real key; nothing in the sandbox may hold it.
 */
const CANARY = `cleanroom-canary-${Date.now()}`
const KEYS = {
  ANTHROPIC_API_KEY: `sk-ant-api03-${CANARY}-anthropic`,
  OPENAI_API_KEY: `sk-proj-${CANARY}-openai`,
  GEMINI_API_KEY: `AIza-${CANARY}-gemini`,
}

const AGENTS = [
  {name: 'claude', key: KEYS.ANTHROPIC_API_KEY, header: 'x-api-key', args: ['-p', 'Say hello.'], path: '/v1/messages'},
  {name: 'codex', key: KEYS.OPENAI_API_KEY, header: 'authorization', args: ['exec', '--skip-git-repo-check', 'Say hello.'], path: '/v1/responses'},
  // Gemini CLI's base-URL mode refuses to run headless (its "gateway" auth type): the route intercepts its API host instead.
  {name: 'gemini', key: KEYS.GEMINI_API_KEY, header: 'x-goog-api-key', args: ['--skip-trust', '-p', 'Say hello.'], path: '/v1beta/models/'},
  {name: 'opencode', key: KEYS.ANTHROPIC_API_KEY, header: 'x-api-key', args: ['run', '-m', 'anthropic/claude-sonnet-4-5', 'Say hello.'], path: '/v1/messages'},
] as const

describe('real agents through the credential gateway: API keys on the host, a fake model API on loopback', function () {
  this.timeout(300_000)
  let api: FakeModelApi
  const suite = cliRepoSuite('cleanroom-gateway-agents-', async (context) => {
    api = await FakeModelApi.start()
    const upstream = `http://127.0.0.1:${api.port}`
    await mkdir(join(context.home, '.config/cleanroom'), {recursive: true})
    await writeFile(
      join(context.home, '.config/cleanroom/config.yaml'),
      [
        'credentials:',
        '  routes:',
        `    anthropic: {upstream: "${upstream}"}`,
        `    openai: {upstream: "${upstream}/v1"}`,
        `    gemini: {upstream: "${upstream}"}`,
        '',
      ].join('\n'),
    )
    // The gateway reaches the fake only because the repository's policy opens that loopback port.
    await writeFile(join(context.repo, 'cleanroom.yaml'), `version: 1\nsandbox:\n  network:\n    allow:\n      - host: 127.0.0.1\n        ports: [${api.port}]\n`)
    Object.assign(context.env, KEYS)
  })
  after(async () => api?.close())

  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]

  for (const agent of AGENTS) {
    it(`${agent.name}: answers with the fake's completion; the fake saw the real key and never the phantom; no key anywhere in the sandbox`, async () => {
      api.requests.length = 0
      // No terminal and an empty stdin, as in CI: codex exec reads stdin to its end before it starts.
      const result = await suite.cli(['agent', agent.name, '--', ...agent.args], {input: ''})
      const id = sandboxOf(result.stderr)
      try {
        expect(result.exitCode, `${result.stdout}\n${result.stderr}`).to.equal(0)
        expect(result.stdout, result.stderr).to.contain(FAKE_COMPLETION)
        expect(result.stderr).to.match(new RegExp(`${agent.name} gets \\w+ through the credential gateway`))
        const calls = api.requests.filter((request) => request.method === 'POST' && request.url.startsWith(agent.path))
        expect(calls.length, JSON.stringify(api.requests.map((request) => `${request.method} ${request.url}`))).to.be.at.least(1)
        for (const call of calls) expect(call.headers[agent.header]).to.equal(agent.header === 'authorization' ? `Bearer ${agent.key}` : agent.key)

        // Every phantom the sandbox holds (43 base64url characters in its environment) stayed there.
        const env = await suite.cli(['exec', '--sandbox-id', id!, '--', 'env'])
        const phantoms = env.stdout.match(/[A-Za-z0-9_-]{43}/g) ?? []
        expect(phantoms.length, env.stdout).to.be.at.least(1)
        for (const phantom of phantoms) expect(api.headerText() + api.requests.map((request) => request.url + request.body).join('')).not.to.contain(phantom)

        // The canary: not in any process's environment, not in any file of the home or the workspace.
        const grep = await suite.cli(['exec', '--sandbox-id', id!, '--', 'sh', '-c', `env | grep -c ${CANARY}; cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep -c ${CANARY}; grep -rlF --binary-files=text ${CANARY} /home/cleanroom /workspace /tmp 2>/dev/null; true`])
        expect(grep.stdout.trim().split('\n'), grep.stderr).to.deep.equal(['0', '0'])
        const auditLog = await readFile(join(suite.home, '.local/state/cleanroom/sandboxes', id!, 'egress.jsonl'), 'utf8')
        expect(auditLog).to.contain('"protocol":"gateway"')
        expect(auditLog).not.to.contain(CANARY)
      } finally {
        if (id) await suite.cli(['sandbox', 'rm', id])
      }
    })
  }
})
