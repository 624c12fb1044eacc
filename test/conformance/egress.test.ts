import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {copyFile, mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import type {CompiledPolicy} from '../../src/policy/schema.js'
import {sandboxPids, startTestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {OtherHost} from './other-host.js'
import {leftoverSandboxes, SandboxUnderTest} from './sandbox.js'
import {BACKENDS, requireBackend} from './backends.js'
import {AbstractSocketTarget, RecordingTarget, UdpTarget} from './targets.js'
import {allowAll} from './egress/allow-all.js'
import {allowedDestinations} from './egress/allowed.js'
import {addressLiterals, forbiddenAddresses} from './egress/bypass-addresses.js'
import {hostReach, rawSockets} from './egress/bypass-direct.js'
import {protocolTricks, requestTricks} from './egress/bypass-proxy.js'
import {controlTargets} from './egress/control.js'
import {failClosed} from './egress/fail-closed.js'
import {npmRegistry} from './egress/npm-registry.js'
import {bareRepository, DNS, OTHER_HTTP, policyOf, selfSignedCertificate, SUITE_BUDGET_MS} from './egress/shared.js'
import {EgressSuite} from './egress/suite.js'

const PROBE_SOURCE = fileURLToPath(new URL('sandbox-probe.mjs', import.meta.url))

/**
 * The egress conformance suite: per backend, four sandboxes under one daemon attack the egress
 * proxy and the network around it, each case asserting what reached the host targets and what
 * the audit log says. Sections live in ./egress/.
 */
for (const backend of BACKENDS) {
  describe(`egress conformance (${backend})`, function () {
    this.timeout(SUITE_BUDGET_MS)
    const dirs = tempDirs('cleanroom-conf-')
    const suite = new EgressSuite(backend)

    before(async function () {
      this.timeout(30_000)
      await requireBackend(backend)
      suite.sandboxesBefore = await sandboxPids()
      const dir = (suite.dir = await dirs.make())
      const workspace = join(dir, 'workspace')
      await mkdir(workspace)
      await copyFile(PROBE_SOURCE, join(workspace, 'sandbox-probe.mjs'))
      const tls = await selfSignedCertificate(dir)
      await writeFile(join(workspace, 'ca.pem'), tls.cert)

      suite.allowedWeb = await RecordingTarget.http('allowed')
      suite.deniedWeb = await RecordingTarget.http('denied')
      suite.unlistedWeb = await RecordingTarget.http('unlisted-port')
      suite.everyAddress = await RecordingTarget.http('every-host-address', '::')
      suite.gitTls = await RecordingTarget.https('git-https', tls, await bareRepository(dir))
      suite.udp = await UdpTarget.start()
      suite.abstract = await AbstractSocketTarget.start(`cr-conf-${randomBytes(4).toString('hex')}`)
      suite.targets.push(suite.allowedWeb, suite.deniedWeb, suite.unlistedWeb, suite.everyAddress, suite.gitTls, suite.udp, suite.abstract)
      const other = (suite.other = await OtherHost.create({tcp: [OTHER_HTTP, DNS], udp: [DNS]}))

      const loopback = ['127.0.0.1']
      Object.assign(suite.names, {
        'allowed.test': loopback,
        'api.allowed.test': loopback,
        'blocked.allowed.test': loopback,
        'denied.test': loopback,
        'rebind.test': loopback,
        'sneaky.test': loopback,
        localhost: ['127.0.0.1', '::1'],
        'other.test': [other.address],
        'unlisted.test': [other.address],
        'evil.test': [other.address],
      })
      suite.test = await startTestDaemon(join(dir, 'daemon'), suite.resolver)

      const {A, T, P} = suite.ports()
      // Broad network rules (each half of the address space) on P and 80: the decision allows,
      // so what refuses loopback, the host's own addresses and metadata is the address check.
      const broad = ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1'].map((host) => ({host, ports: [P, 80]}))
      const mainPolicy = policyOf(
        [
          {host: 'allowed.test', ports: [A, T]},
          {host: '127.0.0.1', ports: [A, T]},
          {host: '*.allowed.test', ports: [A]},
          {host: 'other.test', ports: [OTHER_HTTP]},
          {host: other.cidr, ports: [OTHER_HTTP, P]},
          {host: 'localhost', ports: [P]},
          {host: 'rebind.test', ports: [P]},
          ...broad,
        ],
        [{host: 'denied.test'}, {host: 'blocked.allowed.test'}],
      )
      const create = async (policy: CompiledPolicy, allowAll = false) => {
        const sandbox = await suite.client().createSandbox({backend, policy, workspace_source: workspace, allow_all: allowAll})
        return new SandboxUnderTest(suite.client, sandbox.sandbox_id)
      }
      suite.main = await create(mainPolicy)
      suite.peer = await create(policyOf([{host: 'allowed.test', ports: [A]}, {host: '127.0.0.1', ports: [A]}]))
      suite.open = await create(policyOf([], [{host: 'evil.test'}, {host: other.cidr, ports: [DNS]}]), true)
      // Name rules only, no IP rule: names that resolve to loopback must stay refused.
      suite.nameOnly = await create(policyOf([{host: 'allowed.test', ports: [A]}, {host: 'localhost', ports: [A]}]))
    })

    after(async function () {
      this.timeout(30_000)
      // Every step runs even when one before it failed; the first failure is reported after all of them.
      const failures: unknown[] = []
      const attempt = async (step: () => Promise<unknown>) => step().catch((error: unknown) => failures.push(error))
      // A `before` that failed early left the daemon and the other host unmade.
      const {test, other} = suite as Partial<Pick<EgressSuite, 'test' | 'other'>>
      await attempt(async () => test?.daemon.close({shutdownSandboxes: true}))
      for (const target of suite.targets.splice(0)) await attempt(() => target.close())
      await attempt(async () => other?.destroy())
      await attempt(async () => expect(await leftoverSandboxes(suite.sandboxesBefore, suite.dir), 'bwrap processes of this suite still running').to.deep.equal([]))
      await attempt(() => dirs.cleanup())
      if (failures.length > 0) throw failures[0]
    })

    beforeEach(async () => {
      for (const target of [suite.allowedWeb, suite.deniedWeb, suite.unlistedWeb, suite.everyAddress, suite.gitTls, suite.udp, suite.abstract]) target.reset()
      suite.otherMark = suite.other.events.length
      for (const sandbox of [suite.main, suite.peer, suite.open, suite.nameOnly]) await sandbox.markAudit()
    })

    controlTargets(suite)

    describe('bypass attempts: nothing reaches the target', () => {
      // In the order of the cases' numbers, which interleaves the three families.
      rawSockets(suite)
      addressLiterals(suite)
      requestTricks(suite)
      forbiddenAddresses(suite)
      hostReach(suite)
      protocolTricks(suite)
    })

    allowedDestinations(suite)
    allowAll(suite)
    failClosed(suite)
  })

  npmRegistry(backend)
}
