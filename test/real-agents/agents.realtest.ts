import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cliRepoSuite} from '../helpers/cli-repo.js'

/**
 * `npm run test:agents`: the four built-in agents, for real. Each run is a fresh
 * sandbox with the host rootfs and an empty npm cache, so the agent comes from
 * the npm fallback (`npm exec … <package>@latest`) through the sandbox's egress
 * proxy. Needs the npm registry, which CI can reach; Node and npm on the host.
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

describe('real agents: cleanroom agent <name> -- --version through the npm fallback', function () {
  this.timeout(300_000)
  const suite = cliRepoSuite('cleanroom-real-agents-')
  const sandboxOf = (stderr: string) => /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]

  before(async () => {
    const npm = await suite.cli(['exec', '--', 'sh', '-c', 'command -v npm && npm --version'])
    expect(npm.exitCode, `the host rootfs needs npm for the agents' fallback: ${npm.stderr}`).to.equal(0)
  })

  for (const agent of AGENTS) {
    it(`${agent.name}: npm fetches ${agent.packageName} through the egress proxy in a fresh sandbox and it prints its version`, async () => {
      const started = Date.now()
      const result = await suite.cli(['agent', agent.name, '--', '--version'])
      const took = Date.now() - started
      expect(result.exitCode, result.stderr).to.equal(0)
      expect(result.stdout, result.stderr).to.match(VERSION_LINE)
      expect(result.stderr).to.contain(`${agent.name} may reach: `)
      expect(result.stderr).to.contain('registry.npmjs.org:443')
      expect(result.stderr, 'progress on the slow first start').to.contain(`cleanroom: installing ${agent.packageName}@latest…`)
      const id = sandboxOf(result.stderr)
      expect(id).to.match(/^cr_/)
      // The second start finds it in the sandbox's npm cache: no install, no progress line.
      const again = await suite.cli(['agent', '--sandbox-id', id!, agent.name, '--', '--version'])
      expect(again.exitCode, again.stderr).to.equal(0)
      expect(again.stderr).not.to.contain('installing')
      // The agent was not on the rootfs: it is in this sandbox's npm cache now, nowhere else.
      const cached = await suite.cli(['exec', '--sandbox-id', id!, '--', 'sh', '-c', `ls ~/.npm/_npx/*/node_modules/${agent.packageName}/package.json`])
      expect(cached.exitCode, `${agent.name} did not come from the npm fallback (is it installed on the host rootfs?)`).to.equal(0)
      await suite.cli(['sandbox', 'rm', id!])
      console.log(`      ${agent.name} ${VERSION_LINE.exec(result.stdout)?.[0]} in ${(took / 1000).toFixed(1)} s`)
    })
  }

  describe('with the registry not allowed', () => {
    before(async () => {
      await mkdir(join(suite.home, '.config/cleanroom'), {recursive: true})
      await writeFile(join(suite.home, '.config/cleanroom/config.yaml'), NO_REGISTRY_CONFIG)
    })

    for (const agent of AGENTS) {
      it(`${agent.name}: without registry.npmjs.org in its network, fails fast with npm's 403 from the proxy`, async () => {
        const started = Date.now()
        const result = await suite.cli(['agent', agent.name, '--', '--version'])
        const took = Date.now() - started
        expect(result.exitCode, result.stdout).not.to.equal(0)
        expect(result.stderr).to.contain(`${agent.name} may reach: ${agent.apiHost}:443\n`)
        expect(result.stderr).to.match(/npm error .*403.*registry\.npmjs\.org/)
        expect(took, 'npm gave up within the bound').to.be.below(REFUSED_WITHIN_MS)
        const id = sandboxOf(result.stderr)
        if (id) await suite.cli(['sandbox', 'rm', id])
      })
    }
  })
})
