import {expect} from 'chai'

import type {BackendName} from '../../../src/config/schema.js'
import {sandboxPids, startTestDaemon, type TestDaemon} from '../../helpers/daemon.js'
import {tempDirs} from '../../helpers/tmp.js'
import {leftoverSandboxes, SandboxUnderTest} from '../sandbox.js'
import {requireBackend} from '../backends.js'
import {policyOf, SUITE_BUDGET_MS} from './shared.js'

/** The real npm registry, reached through the proxy of a sandbox allowed registry.npmjs.org by name only. */
export function npmRegistry(backend: BackendName): void {
  describe(`npm registry (network) (${backend})`, function () {
    this.timeout(SUITE_BUDGET_MS)
    const dirs = tempDirs('cleanroom-conf-npm-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined

    before(async () => {
      await requireBackend(backend)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      // The system resolver: the real registry, through the proxy like any allowed host.
      test = await startTestDaemon(dir)
    })

    after(async () => {
      try {
        await test?.daemon.close({shutdownSandboxes: true})
        expect(await leftoverSandboxes(sandboxesBefore, dir), 'bwrap processes of this suite still running').to.deep.equal([])
      } finally {
        await dirs.cleanup()
      }
    })

    it('npm view reaches registry.npmjs.org through the proxy, allowed by name only', async () => {
      const created = await test!.client.createSandbox({backend, policy: policyOf([{host: 'registry.npmjs.org', ports: [443]}]), workspace_source: null})
      const sandbox = new SandboxUnderTest(() => test!.client, created.sandbox_id)
      const view = await sandbox.sh('npm view is-number version', {npm_config_update_notifier: 'false', npm_config_fetch_retries: '0'})
      expect(view.stdout.trim(), view.stderr).to.match(/^\d+\.\d+\.\d+$/)
      expect(view.exit_code).to.equal(0)
      const [line] = await sandbox.expectAudit([{host: 'registry.npmjs.org', port: 443, action: 'allow', reason: 'allowed_by_rule', protocol: 'connect'}])
      expect(line!.bytes_down).to.be.above(0)
      // Nothing else was allowed: the only way out was the one rule.
      expect((await sandbox.audit()).filter((event) => event.action === 'allow' && event.host !== 'registry.npmjs.org')).to.deep.equal([])
    })
  })
}
