import {expect} from 'chai'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {messageOf} from '../../../src/errors/index.js'
import {startTestDaemon} from '../../helpers/daemon.js'
import {expectRefusal, PROBE, proxyAnswer, until, via} from '../sandbox.js'
import {OTHER_HTTP, SUITE_BUDGET_MS} from './shared.js'
import type {EgressSuite} from './suite.js'

/** A line of the watcher's log (sandbox-probe.mjs `watch`): the state it changed to, when that attempt began (epoch ms), how long it took. */
interface WatchedState {
  state: string
  began: number
  tookMs: number
}

/** What the watcher may see between its first and last `ok`, and why. */
const WHILE_RESTARTING = new Map([
  ['ECONNREFUSED', 'no daemon: nothing listens on the proxy port, the kernel refuses'],
  ['ECONNRESET', "a connection queued on the old listener when it closed, one the closing proxy cut after reading its request, or (gvisor) one the sandbox's forwarder found no daemon for"],
  ['answer ', 'a connection the closing proxy cut before reading anything: closed with no answer'],
  ['timeout', "one made while the new daemon starts: the sandbox's listener exists before the daemon serves it, and a loaded machine may take longer than the watcher waits (2 s)"],
])

/**
 * A watcher in `main` (sandbox-probe.mjs `watch`) trying the proxy every 25 ms while the
 * daemon restarts, and when the daemon went and came back (host clock, which the
 * sandbox's follows), to read the watcher's log against when an assertion fails.
 */
class RestartWatch {
  private readonly marks: Array<[string, number]> = []
  private readonly log = '/tmp/watch.log'
  private readonly stopFile = '/tmp/watch.stop'

  constructor(private readonly suite: EgressSuite) {}

  async start(authority: string): Promise<void> {
    // The stop file ends the watcher; its own limit (the test's budget) only ends one a failed test left, however long the restart took.
    const watch = JSON.stringify({authority, log: this.log, stop: this.stopFile, intervalMs: 25, maxMs: SUITE_BUDGET_MS})
    await this.suite.main.sh(`node ${PROBE} watch '${watch}' </dev/null >/tmp/watch.out 2>&1 &`)
  }

  async stop(): Promise<void> {
    await this.suite.main.sh(`touch ${this.stopFile}`)
  }

  mark(what: string): void {
    this.marks.push([what, Date.now()])
  }

  async entries(): Promise<WatchedState[]> {
    const {stdout} = await this.suite.main.sh(`cat ${this.log} 2>/dev/null`)
    return stdout
      .split('\n')
      .filter(Boolean)
      .map((line) => {
        const [state = '', began = '', tookMs = ''] = line.split('\t')
        return {state, began: Number(began), tookMs: Number(tookMs)}
      })
  }

  /** Waits up to 5 s until the states logged so far satisfy `condition`; failing, says what the watcher saw when. */
  async until(condition: (states: string[]) => boolean, what: string): Promise<void> {
    await until(async () => condition((await this.entries()).map(({state}) => state)), 5000, what).catch(async (error: unknown) =>
      expect.fail(`${messageOf(error)}\n${this.story(await this.entries())}`),
    )
  }

  /** The watcher's states among the marks, in time order, and the current daemon's log. */
  story(entries: WatchedState[]): string {
    // Times from the daemon's close; before it, from the watcher's first state.
    const zero = this.marks[0]?.[1] ?? entries[0]?.began ?? 0
    const at = (time: number) => `${time >= zero ? '+' : ''}${time - zero} ms`
    const events = [
      ...this.marks.map(([what, time]) => ({time, text: `${at(time)} ${what}`})),
      ...entries.map(({state, began, tookMs}) => ({time: began, text: `${at(began)} watcher: ${JSON.stringify(state)} (took ${tookMs} ms)`})),
    ]
    const {test, main} = this.suite
    const daemonLog = test.logs.filter((line) => line.includes(main.id) || !line.startsWith('sandbox '))
    const timeline = events.sort((a, b) => a.time - b.time).map(({text}) => text)
    return [...timeline, "the daemon's log:", ...daemonLog].join('\n')
  }
}

/** No daemon, no egress; a new daemon re-adopts the sandboxes and their policies. */
export function failClosed(suite: EgressSuite): void {
  describe('fail closed', () => {
    it('34 while the daemon is down the proxy port refuses connections; a new daemon re-adopts the sandbox and egress works again', async () => {
      const {A} = suite.ports()
      const watch = new RestartWatch(suite)
      await watch.start(`allowed.test:${A}`)
      await watch.until((states) => states.includes('ok'), 'the watcher to get through the proxy')

      watch.mark('the old daemon closes')
      await suite.test.daemon.close()
      watch.mark('the old daemon is closed')
      const auditWhenDown = await readFile(join(suite.test.stateDir, 'sandboxes', suite.main.id, 'egress.jsonl'), 'utf8')
      const reachedWhenDown = suite.allowedWeb.connections.length
      // The watcher keeps trying while no daemon runs (every 25 ms).
      await sleep(700)
      expect(suite.allowedWeb.connections.length, 'connections that reached the allowed host while the daemon was down').to.equal(reachedWhenDown)

      watch.mark('a new daemon starts')
      suite.test = await startTestDaemon(join(suite.dir, 'daemon'), suite.resolver)
      watch.mark('the new daemon listens')
      expect((await suite.client().inspectSandbox(suite.main.id)).status).to.equal('ready')
      await watch.until((states) => states.filter((state) => state === 'ok').length >= 2, 'the watcher to get through again')
      await watch.stop()
      const entries = await watch.entries()
      const seen = entries.map(({state}) => state)
      const story = watch.story(entries)
      expect(seen[0], story).to.equal('ok')
      expect(seen.at(-1), story).to.equal('ok')
      expect(seen, story).to.include('ECONNREFUSED')
      // In between, only what a closing daemon, no daemon and a starting one give (WHILE_RESTARTING).
      expect(seen.filter((state) => state !== 'ok' && !WHILE_RESTARTING.has(state)), story).to.deep.equal([])
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
