import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {renderSandbox, renderSandboxTable} from '../../src/client/render.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

describe('a sandbox under --dangerously-allow-all never looks like a strict one', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-allow-all-')
  let dir: string
  let test: TestDaemon
  let bwrapBefore: Set<number>

  before(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    test = await startTestDaemon(dir)
  })

  after(async () => {
    await test.daemon.close({shutdownSandboxes: true})
    expect(await leftoverSandboxes(bwrapBefore, dir)).to.deep.equal([])
    await dirs.cleanup()
  })

  it('shows another policy hash than the strict sandbox of the same policy, and says why in inspect and ls', async () => {
    const repo = join(dir, 'repo')
    await mkdir(repo)
    await writeFile(join(repo, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    allow: ["api.github.com:443"]\n')
    const strict = await test.client.createSandbox({repository: repo})
    const relaxed = await test.client.createSandbox({repository: repo, allow_all: true})
    expect(relaxed.policy.hash, 'the same repository policy').to.equal(strict.policy.hash)
    expect(strict.policy_hash).to.equal(strict.policy.hash)
    expect(relaxed.policy_hash).to.match(/^[0-9a-f]{64}$/).and.not.equal(strict.policy_hash)
    const again = await test.client.createSandbox({repository: repo, allow_all: true})
    expect(again.policy_hash, 'stable').to.equal(relaxed.policy_hash)

    const inspected = await test.client.inspectSandbox(relaxed.sandbox_id)
    expect(renderSandbox(inspected)).to.contain(`policy:    ${relaxed.policy_hash} (ALLOW ALL over policy ${strict.policy_hash})`)
    const table = renderSandboxTable([strict, relaxed])
    expect(table).to.contain(`${strict.policy_hash.slice(0, 12)}  `)
    expect(table).to.contain(`${relaxed.policy_hash.slice(0, 12)} ALLOW-ALL`)
    for (const sandbox of [strict, relaxed, again]) await test.client.removeSandbox(sandbox.sandbox_id)
  })
})
