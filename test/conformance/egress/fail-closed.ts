import {expect} from 'chai'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {startTestDaemon} from '../../helpers/daemon.js'
import {expectRefusal, PROBE, proxyAnswer, until, via} from '../sandbox.js'
import {OTHER_HTTP} from './shared.js'
import type {EgressSuite} from './suite.js'

/** No daemon, no egress; a new daemon re-adopts the sandboxes and their policies. */
export function failClosed(suite: EgressSuite): void {
  describe('fail closed', () => {
    it('34 while the daemon is down the proxy port refuses connections; a new daemon re-adopts the sandbox and egress works again', async () => {
      const {A} = suite.ports()
      const log = '/tmp/watch.log'
      const stop = '/tmp/watch.stop'
      const watch = JSON.stringify({authority: `allowed.test:${A}`, log, stop, intervalMs: 25})
      await suite.main.sh(`node ${PROBE} watch '${watch}' </dev/null >/tmp/watch.out 2>&1 &`)
      const states = async () => (await suite.main.sh(`cat ${log} 2>/dev/null`)).stdout.trim().split('\n').filter(Boolean)
      await until(async () => (await states()).includes('ok'), 5000, 'the watcher to get through the proxy')

      await suite.test.daemon.close()
      const auditWhenDown = await readFile(join(suite.test.stateDir, 'sandboxes', suite.main.id, 'egress.jsonl'), 'utf8')
      const reachedWhenDown = suite.allowedWeb.connections.length
      // The watcher keeps trying while no daemon runs (every 25 ms).
      await sleep(700)
      expect(suite.allowedWeb.connections.length, 'connections that reached the allowed host while the daemon was down').to.equal(reachedWhenDown)

      suite.test = await startTestDaemon(join(suite.dir, 'daemon'), suite.resolver)
      expect((await suite.client().inspectSandbox(suite.main.id)).status).to.equal('ready')
      await until(async () => (await states()).filter((state) => state === 'ok').length >= 2, 5000, 'the watcher to get through again')
      await suite.main.sh(`touch ${stop}`)
      const seen = await states()
      expect(seen[0]).to.equal('ok')
      expect(seen.at(-1)).to.equal('ok')
      expect(seen).to.include('ECONNREFUSED')
      // Nothing but a refusal (and a connection the closing daemon cut, reset or ended unanswered: `answer ` with no status line) in between.
      expect(seen.filter((state) => !['ok', 'ECONNREFUSED', 'ECONNRESET', 'answer '].includes(state))).to.deep.equal([])
      // The audit log goes on where it stopped, and nothing was logged while no proxy listened.
      const after = (await suite.main.audit()).map((event) => JSON.stringify(event))
      const before = auditWhenDown.trim().split('\n')
      expect(after.slice(0, before.length)).to.deep.equal(before)
      expect(after.length).to.be.above(before.length)
      // The re-adopted proxies enforce the same policies: main still refuses, the allow-all sandbox still allows.
      const {D} = suite.ports()
      expectRefusal(await suite.main.probeOne(via.connect(`denied.test:${D}`)), 403, 'denied_by_rule', 'main after re-adoption')
      expect(proxyAnswer(await suite.open.probeOne(via.get(`http://unlisted.test:${OTHER_HTTP}/again`))).status, 'allow-all after re-adoption').to.equal(200)
      await suite.expectUntouched(suite.deniedWeb)
    })
  })
}
