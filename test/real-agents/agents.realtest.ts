import {expect} from 'chai'
import {mkdir, rm, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cliRepoSuite} from '../helpers/cli-repo.js'

/**
 * `npm run test:agents`: the four built-in agents, for real. The first start of
 * each fills the suite's own shared agent cache: the daemon runs npm in a fetch
 * sandbox whose policy is the agent's network; the next new sandbox runs the
 * agent from the cache, mounted read-only, without fetching. Needs the npm
 * registry, which CI can reach; Node and npm on the host.
 */
const AGENTS = [
  {name: 'codex', packageName: '@openai/codex', apiHost: 'api.openai.com'},
  {name: 'claude', packageName: '@anthropic-ai/claude-code', apiHost: 'api.anthropic.com'},
  {name: 'gemini', packageName: '@google/gemini-cli', apiHost: 'generativelanguage.googleapis.com'},
  {name: 'opencode', packageName: 'opencode-ai', apiHost: 'opencode.ai'},
] as const

/** How long an agent may take to fail when npm cannot reach the registry: npm must give up, not retry for minutes. */
const REFUSED_WITHIN_MS = 60_000
const VERSION_LINE = /^\D{0,40}\d+\.\d+\.\d+\S*(?: .*)?$/m

// The built-in agents with `network` cut down to their API host by the runtime config: npm cannot reach the registry.
const NO_REGISTRY_CONFIG = `agents:\n${AGENTS.map((agent) => `  ${agent.name}:\n    network:\n      - host: ${agent.apiHost}\n        ports: [443]\n`).join('')}`

describe('real agents: cleanroom agent <name> --version from the shared agent cache', function () {
  this.timeout(300_000)
  const suite = cliRepoSuite('cleanroom-real-agents-')
  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]

  before(async () => {
    const npm = await suite.cli(['exec', '--', 'sh', '-c', 'command -v npm && npm --version'])
    expect(npm.exitCode, `the host rootfs needs npm for the agents' fallback: ${npm.stderr}`).to.equal(0)
  })

  // First, while the suite's agent cache is empty.
  describe('with the registry not allowed', () => {
    before(async () => {
      await mkdir(join(suite.home, '.config/cleanroom'), {recursive: true})
      await writeFile(join(suite.home, '.config/cleanroom/config.yaml'), NO_REGISTRY_CONFIG)
    })

    for (const agent of AGENTS) {
      it(`${agent.name}: without registry.npmjs.org in its network, the fetch fails fast with npm's 403 from the proxy`, async () => {
        const started = Date.now()
        const result = await suite.cli(['agent', agent.name, '--version'])
        const took = Date.now() - started
        expect(result.exitCode, result.stdout).not.to.equal(0)
        expect(result.stderr).to.contain(`${agent.name} may reach: ${agent.apiHost}:443\n`)
        expect(result.stderr).to.match(/npm error .*403.*registry\.npmjs\.org/)
        expect(took, 'npm gave up within the bound').to.be.below(REFUSED_WITHIN_MS)
        expect(sandboxOf(result.stderr), 'no sandbox is left of a run whose agent never started').to.equal(undefined)
      })
    }
  })

  describe('with the registry allowed', () => {
    before(async () => {
      await rm(join(suite.home, '.config/cleanroom/config.yaml'))
    })

    for (const agent of AGENTS) {
      it(`${agent.name}: the daemon fetches ${agent.packageName} into the shared cache through the agent's network, and new sandboxes run it from there`, async () => {
        const started = Date.now()
        const result = await suite.cli(['agent', agent.name, '--version'])
        const took = Date.now() - started
        expect(result.exitCode, result.stderr).to.equal(0)
        expect(result.stdout, result.stderr).to.match(VERSION_LINE)
        expect(result.stderr).to.contain(`${agent.name} may reach: `)
        expect(result.stderr).to.contain('registry.npmjs.org:443')
        expect(result.stderr).to.match(new RegExp(`cleanroom: ${agent.packageName.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\S+ is in the agent cache now`))
        const first = sandboxOf(result.stderr)
        expect(first).to.match(/^cr_/)

        // A new sandbox: no fetch, no npm cache of its own; the package is the cache's, read-only.
        const again = await suite.cli(['agent', agent.name, '--version'])
        expect(again.exitCode, again.stderr).to.equal(0)
        expect(again.stdout).to.equal(result.stdout)
        expect(again.stderr).not.to.contain('agent cache')
        const second = sandboxOf(again.stderr)!
        const inside = await suite.cli(['exec', '--sandbox-id', second, '--', 'sh', '-c', `test ! -e ~/.npm && test -f /cleanroom/agent/node_modules/${agent.packageName}/package.json && ! touch /cleanroom/agent/x 2>/dev/null && echo ok`])
        expect(inside.stdout, inside.stderr).to.equal('ok')
        for (const id of [first!, second]) await suite.cli(['sandbox', 'rm', id])
        console.log(`      ${agent.name} ${VERSION_LINE.exec(result.stdout)?.[0]}: fetched and run in ${(took / 1000).toFixed(1)} s`)
      })
    }

    it('gemini: a check that cannot reach the registry runs the release cached before, with a warning', async () => {
      await writeFile(join(suite.home, '.config/cleanroom/config.yaml'), NO_REGISTRY_CONFIG)
      const result = await suite.cli(['agent', '--update', 'gemini', '--version'])
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(result.stdout).to.match(VERSION_LINE)
      expect(result.stderr).to.match(/cleanroom: warning: could not ask the registry for @google\/gemini-cli@latest .*: using \S+, cached before/)
      await suite.cli(['sandbox', 'rm', sandboxOf(result.stderr)!])
    })
  })
})
