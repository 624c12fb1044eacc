import {expect} from 'chai'
import {readdir, readFile} from 'node:fs/promises'

import {runInSandbox} from '../../src/client/exec.js'
import {STOPPED_KEPT} from '../../src/daemon/records.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {sandboxPids, leftoverSandboxes, mountsMentioning} from '../helpers/daemon.js'
import {daemonHomeSuite, type DaemonProcess, fdCount, rssKiB, sandboxDirs, scaled, spawnDaemon} from '../helpers/daemon-process.js'
import {grownBy, heapSnapshotOptions, liveObjectCounts} from '../helpers/heap.js'
import {RUN_SCRIPT} from '../helpers/cli.js'
import {captureTerminal} from '../helpers/terminal.js'

/**
 * Cycles before the baseline. The daemon remembers the last STOPPED_KEPT ended sandboxes (`sandbox ls --all`),
 * so its live objects grow (by 3 objects and 2 arrays a cycle) until that many have ended, then stay flat.
 * Its heap, compiled code and allocator grow to their working size over about as many (measured: RSS
 * 82 → 117 MiB over the first 100, then 112–126 MiB up to 400), so RSS alone cannot tell a leak from warming
 * up in a CI-sized run; what can is the live objects, counted from heap snapshots (each after a full GC).
 */
const WARM_UP = scaled(STOPPED_KEPT + 20, 500)
const PARALLEL = 4

describe('create, exec and remove, over and over', function () {
  this.timeout(scaled(120_000, 1_800_000))
  const suite = daemonHomeSuite('cleanroom-leaks-')

  it('leaves no process, mount, namespace, state entry, uid claim or daemon fd behind, and the daemon no bigger', async () => {
    const count = scaled(50, 1000)
    const bwrapBefore = await sandboxPids()
    const daemon = await spawnDaemon(suite.home, [], [...heapSnapshotOptions(suite.home), RUN_SCRIPT, 'serve'])
    // The warm-up runs as many at once as the measured cycles: four creates in flight need more heap than one.
    await cycles(daemon, 0, WARM_UP)
    const objects = await liveObjectCounts(daemon.pid, daemon.client, suite.home)
    const before = {fds: await fdCount(daemon.pid), rss: await rssKiB(daemon.pid), children: await childrenOf(daemon.pid)}
    await cycles(daemon, WARM_UP, count)

    // Each sandbox's processes hold its namespaces and mounts; an egress listener left open would hold its network namespace through a daemon fd.
    expect(await leftoverSandboxes(bwrapBefore, suite.home), 'sandbox processes').to.deep.equal([])
    expect(await mountsMentioning(suite.home), 'mounts').to.deep.equal([])
    expect(await sandboxDirs(daemon.stateDir), 'state entries (each holds its uid claim)').to.deep.equal([])
    expect(await daemon.client.listSandboxes(false), 'live sandboxes').to.deep.equal([])
    expect(await childrenOf(daemon.pid), "the daemon's child processes").to.deep.equal(before.children)
    expect(await fdCount(daemon.pid), "the daemon's fds").to.be.at.most(before.fds)
    // Anything kept per sandbox (a record, a socket, a timer, a listener) is one more live object per cycle.
    expect(grownBy(objects, await liveObjectCounts(daemon.pid, daemon.client, suite.home), count / 2), 'live objects kept per cycle').to.deep.equal({})
    // A native leak (buffers, handles) shows in RSS only; the bound leaves room for the allocator's own growth.
    const rss = await rssKiB(daemon.pid)
    expect(rss, `daemon RSS ${rss} KiB after ${count} cycles, ${before.rss} KiB before`).to.be.below(before.rss * 1.1 + 16 * 1024)
  })
})

/** `count` cycles, PARALLEL at a time, numbered from `first`. */
async function cycles(daemon: DaemonProcess, first: number, count: number): Promise<void> {
  for (let start = 0; start < count; start += PARALLEL) {
    await Promise.all(Array.from({length: Math.min(PARALLEL, count - start)}, (_, i) => cycle(daemon, first + start + i)))
  }
}

/** One sandbox's life: create, one execution (every other one on a terminal), remove. */
async function cycle(daemon: DaemonProcess, i: number): Promise<void> {
  const sandbox = await daemon.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
  const terminal = captureTerminal()
  const outcome = await runInSandbox(daemon.client, sandbox.sandbox_id, {argv: ['sh', '-c', `echo cycle-${i}`], env: {}, tty: i % 2 === 1}, terminal)
  expect(outcome.exitCode).to.equal(0)
  expect(terminal.output().toString()).to.match(new RegExp(`^cycle-${i}\\r?\\n$`))
  await daemon.client.removeSandbox(sandbox.sandbox_id)
}

async function childrenOf(pid: number): Promise<number[]> {
  const children: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '')
    if (stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1] === String(pid)) children.push(Number(entry))
  }
  return children.sort((a, b) => a - b)
}
