// The daemon's own lifecycle on this machine: how long a daemon takes to start (and adopt) with N live
// sandboxes, to stop on SIGTERM with streams open, what watching adopted sandboxes costs it when idle,
// and its RSS. Run: npm run build && node --import tsx bench/daemon-lifecycle.ts [sandboxes=50]
import {mkdtemp, readFile, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {DEFAULT_POLICY} from '../src/policy/compile.js'
import {type DaemonProcess, removeEverything, rssKiB, spawnDaemon} from '../test/helpers/daemon-process.js'
import {stats} from './harness.js'

const COUNT = Number(process.argv[2] ?? 50)
const RUNS = 5
const IDLE_SECONDS = 30

/** CPU time (user + kernel) of a process so far, in ms. */
async function cpuMs(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100
}

async function timedStart(home: string): Promise<{daemon: DaemonProcess; ms: number}> {
  const start = performance.now()
  const daemon = await spawnDaemon(home)
  return {daemon, ms: performance.now() - start}
}

async function timedStop(daemon: DaemonProcess): Promise<number> {
  const start = performance.now()
  process.kill(daemon.pid, 'SIGTERM')
  await daemon.exited
  return performance.now() - start
}

const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-lifecycle-'))
try {
  const empty: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const {daemon, ms} = await timedStart(home)
    empty.push(ms)
    await timedStop(daemon)
  }
  const first = await spawnDaemon(home)
  const rssEmpty = await rssKiB(first.pid)
  for (let made = 0; made < COUNT; made += 5) {
    await Promise.all(Array.from({length: Math.min(5, COUNT - made)}, () => first.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})))
  }
  await timedStop(first)

  const adopting: number[] = []
  const stopping: number[] = []
  for (let i = 0; i < RUNS; i++) {
    const {daemon, ms} = await timedStart(home)
    adopting.push(ms)
    // A stream that never reads and one that waits: what used to keep a stopping daemon alive.
    const sandboxes = await daemon.client.listSandboxes(false)
    const flood = await daemon.client.startExec(sandboxes[0]!.sandbox_id, {argv: ['yes'], env: {}, tty: false})
    flood.pause()
    const quiet = await daemon.client.startExec(sandboxes[1]!.sandbox_id, {argv: ['sleep', '60'], env: {}, tty: false})
    stopping.push(await timedStop(daemon))
    flood.destroy()
    quiet.destroy()
  }
  const last = await spawnDaemon(home)
  const cpuBefore = await cpuMs(last.pid)
  await sleep(IDLE_SECONDS * 1000)
  const idleCpu = (await cpuMs(last.pid)) - cpuBefore
  const rssAdopted = await rssKiB(last.pid)

  const show = (name: string, samples: number[]) => {
    const {median, p95, min} = stats(samples)
    console.log(`${name}: median ${median.toFixed(0)} ms, p95 ${p95.toFixed(0)} ms, min ${min.toFixed(0)} ms (${samples.length} runs)`)
  }
  show('daemon start, no sandbox (spawn to first answer)', empty)
  show(`daemon start adopting ${COUNT} live sandboxes (spawn to first answer)`, adopting)
  show(`SIGTERM to exit with ${COUNT} sandboxes, one stream not read and one waiting`, stopping)
  console.log(`daemon CPU while idle with ${COUNT} adopted sandboxes watched: ${idleCpu.toFixed(0)} ms over ${IDLE_SECONDS} s`)
  console.log(`daemon RSS: ${rssEmpty} KiB with no sandbox, ${rssAdopted} KiB with ${COUNT} adopted: ${((rssAdopted - rssEmpty) / COUNT).toFixed(0)} KiB per sandbox`)
} finally {
  await removeEverything(home)
  await rm(home, {recursive: true, force: true})
}
