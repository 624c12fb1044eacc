import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {renderSandbox, renderSandboxTable} from '../../src/client/render.js'
import {testDaemonSuite} from '../helpers/daemon.js'

describe('a sandbox under --dangerously-allow-all never looks like a strict one', function () {
  this.timeout(60_000)
  const suite = testDaemonSuite('cleanroom-allow-all-')

  it('shows another policy hash than the strict sandbox of the same policy, and says why in inspect and ls', async () => {
    const repo = join(suite.dir, 'repo')
    await mkdir(repo)
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    allow: ["api.github.com:443"]\n')
    const strict = await suite.test.client.createSandbox({repository: repo})
    const relaxed = await suite.test.client.createSandbox({repository: repo, allow_all: true})
    expect(relaxed.policy.hash, 'the same repository policy').to.equal(strict.policy.hash)
    expect(strict.policy_hash).to.equal(strict.policy.hash)
    expect(relaxed.policy_hash).to.match(/^[0-9a-f]{64}$/).and.not.equal(strict.policy_hash)
    const again = await suite.test.client.createSandbox({repository: repo, allow_all: true})
    expect(again.policy_hash, 'stable').to.equal(relaxed.policy_hash)

    const inspected = await suite.test.client.inspectSandbox(relaxed.sandbox_id)
    expect(renderSandbox(inspected)).to.contain(`policy:    ${relaxed.policy_hash} (ALLOW ALL over policy ${strict.policy_hash})`)
    const table = renderSandboxTable([strict, relaxed])
    expect(table).to.contain(`${strict.policy_hash.slice(0, 12)}  `)
    expect(table).to.contain(`${relaxed.policy_hash.slice(0, 12)} ALLOW-ALL`)
    for (const sandbox of [strict, relaxed, again]) await suite.test.client.removeSandbox(sandbox.sandbox_id)
  })
})
