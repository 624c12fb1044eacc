import {readFile} from 'node:fs/promises'
import {request as httpRequest} from 'node:http'
import {basename, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {DaemonClient} from '../../src/client/client.js'
import {DEFAULT_RUNTIME_CONFIG, type RuntimeConfig} from '../../src/config/schema.js'
import {type RunningDaemon, startDaemon} from '../../src/daemon/daemon.js'
import type {Resolver} from '../../src/egress/addresses.js'
import {tempDirs} from './tmp.js'

export interface TestDaemon {
  daemon: RunningDaemon
  client: DaemonClient
  socketPath: string
  stateDir: string
  /** The shared agent cache of this daemon, in the test's dir. */
  agentCacheDir: string
  logs: string[]
}

/**
 * A daemon in this process on a socket and state dir under `dir`; `resolver` answers its egress proxies' lookups.
 * `options` change the runtime config, the state dir, how long an ephemeral sandbox waits for its command,
 * or add roots the credential gateway trusts upstream (the test's own TLS servers).
 */
export async function startTestDaemon(
  dir: string,
  resolver?: Resolver,
  options: {config?: Partial<RuntimeConfig>; stateDir?: string; ephemeralAttachMs?: number; upstreamCa?: readonly string[]} = {},
): Promise<TestDaemon> {
  const socketPath = join(dir, 'd.sock')
  const stateDir = options.stateDir ?? join(dir, 'state')
  const logs: string[] = []
  const agentCacheDir = join(dir, 'agent-cache')
  const daemon = await startDaemon({
    socketPath,
    stateDir,
    imageCacheDir: join(dir, 'images'),
    agentCacheDir,
    config: {...DEFAULT_RUNTIME_CONFIG, ...options.config},
    version: 'test',
    log: (line) => logs.push(line),
    ...(resolver && {resolver}),
    ...(options.ephemeralAttachMs === undefined ? {} : {ephemeralAttachMs: options.ephemeralAttachMs}),
    ...(options.upstreamCa && {upstreamCa: options.upstreamCa}),
  })
  return {daemon, client: new DaemonClient(socketPath), socketPath, stateDir, agentCacheDir, logs}
}

/** The daemon of a `testDaemonSuite`; `test` may be replaced by a test that restarts it. */
export interface DaemonSuite {
  test: TestDaemon
  readonly dir: string
  /** The sandbox processes on the machine before the daemon started, for leftoverSandboxes. */
  readonly sandboxesBefore: ReadonlySet<number>
}

/**
 * Hooks for a describe block whose tests share one in-process daemon (or have one
 * each, with `each`), in a temp dir of its own: after it, the daemon removes its
 * sandboxes, none may be left running or mounted, and the dir goes, also when that
 * check fails. `start` makes the daemon (default: startTestDaemon(dir)).
 */
export function testDaemonSuite(prefix: string, options: {each?: boolean; start?: (dir: string) => Promise<TestDaemon>} = {}): DaemonSuite {
  const dirs = tempDirs(prefix)
  const start = options.start ?? ((dir: string) => startTestDaemon(dir))
  let sandboxesBefore = new Set<number>()
  let dir: string | undefined
  let test: TestDaemon | undefined
  const setUp = async () => {
    sandboxesBefore = await sandboxPids()
    dir = await dirs.make()
    test = await start(dir)
  }
  const tearDown = async () => {
    try {
      await test?.daemon.close({shutdownSandboxes: true})
      test = undefined
      if (dir === undefined) return
      const made = dir
      const left = await leftoverSandboxes(sandboxesBefore, made)
      for (const pid of left) process.kill(pid, 'SIGKILL')
      if (left.length > 0) throw new Error(`sandboxes of this suite still running after the daemon removed them all: ${left.join(', ')}`)
      const mounts = await mountsMentioning(made)
      if (mounts.length > 0) throw new Error(`mounts of this suite left:\n${mounts.join('\n')}`)
    } finally {
      dir = undefined
      await dirs.cleanup()
    }
  }
  if (options.each) {
    beforeEach(setUp)
    afterEach(tearDown)
  } else {
    before(setUp)
    after(tearDown)
  }
  return {
    get test() {
      if (!test) throw new Error('the suite has no daemon running (its set-up failed)')
      return test
    },
    set test(replacement: TestDaemon) {
      test = replacement
    },
    get dir() {
      if (dir === undefined) throw new Error('the suite has no dir (its set-up failed)')
      return dir
    },
    get sandboxesBefore() {
      return sandboxesBefore
    },
  }
}

/** The programs a sandbox's host processes run: bwrap (linux-ns), runsc and what it starts (gvisor). */
const SANDBOX_PROGRAMS = new Set(['bwrap', 'runsc', 'runsc-gofer', 'runsc-sandbox'])

/** Pids of every sandbox process on the machine (bwrap, runsc), whoever started it. */
export async function sandboxPids(): Promise<Set<number>> {
  const {readdir} = await import('node:fs/promises')
  const pids = new Set<number>()
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')
    if (SANDBOX_PROGRAMS.has(basename(cmdline.split('\0')[0] ?? ''))) pids.add(Number(entry))
  }
  return pids
}

/**
 * Sandbox processes started since `before` that belong to sandboxes under `dir`: their
 * mount table names it (bwrap's, and the mount namespace `runsc run` runs in), or their
 * command line does.
 */
export async function sandboxesOf(before: ReadonlySet<number>, dir: string): Promise<number[]> {
  const ours: number[] = []
  for (const pid of await sandboxPids()) {
    if (before.has(pid)) continue
    const [mounts, cmdline] = await Promise.all([readFile(`/proc/${pid}/mountinfo`, 'utf8').catch(() => ''), readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')])
    if (mounts.includes(dir) || cmdline.includes(dir)) ours.push(pid)
  }
  return ours
}

/**
 * Like `sandboxesOf`, after giving killed sandboxes up to 10 s to be reaped (a loaded
 * machine has taken more than 2). Other sandbox processes on the machine (other test
 * runs, other users) are not ours to judge.
 */
export async function leftoverSandboxes(before: ReadonlySet<number>, dir: string): Promise<number[]> {
  for (let attempt = 0; ; attempt++) {
    const ours = await sandboxesOf(before, dir)
    if (ours.length === 0 || attempt === 200) return ours
    await sleep(50)
  }
}

/** Mount lines (of any process we can read) mentioning `marker`. */
export async function mountsMentioning(marker: string): Promise<string[]> {
  const mountinfo = await readFile('/proc/self/mountinfo', 'utf8')
  return mountinfo.split('\n').filter((line) => line.includes(marker))
}

/** Stops a daemon started by the CLI (found through its socket) and waits for it to exit. */
export async function stopCliDaemon(socketPath: string): Promise<void> {
  const client = new DaemonClient(socketPath)
  const pid = await client.ping().then(
    (answer) => answer.pid,
    () => undefined,
  )
  if (pid === undefined) return
  for (const sandbox of await client.listSandboxes(false).catch(() => [])) await client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
  process.kill(pid, 'SIGTERM')
  for (let i = 0; i < 200; i++) {
    try {
      process.kill(pid, 0)
    } catch {
      return
    }
    await sleep(25)
  }
  process.kill(pid, 'SIGKILL')
}

/** An API answer as a client sees it: the HTTP status and the JSON body. */
export interface ApiAnswer<T = Record<string, unknown>> {
  status: number
  body: T & {error?: {code: string; message: string; details?: unknown}}
}

/** One request to the daemon's API over its socket, without the client library: for tests that check statuses. */
export function apiRequest<T = Record<string, unknown>>(socketPath: string, method: string, path: string, body?: string): Promise<ApiAnswer<T>> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({socketPath, method, path, headers: {'content-type': 'application/json'}}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString() || '{}') as ApiAnswer<T>['body']}))
    })
    req.on('error', reject)
    req.end(body)
  })
}
