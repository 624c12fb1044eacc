import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {access} from 'node:fs/promises'
import {join} from 'node:path'

import {DaemonClient} from '../../src/client/client.js'
import {DEFAULT_RESOURCES, type ResourceSettings} from '../../src/config/resources.js'
import {DEFAULT_RUNTIME_CONFIG, type RuntimeConfig} from '../../src/config/schema.js'
import {type RunningDaemon, startDaemon} from '../../src/daemon/daemon.js'
import {probeCgroups} from '../../src/sandbox/backends/linux-ns/cgroup-host.js'
import {cgroupDirs, type SandboxCgroup} from '../../src/sandbox/backends/linux-ns/cgroups.js'
import {requireBackend} from '../conformance/backends.js'
import {PROJECT_ROOT} from '../helpers/cli.js'
import {leftoverSandboxes, sandboxPids} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'

export const MiB = 1024 ** 2
const VERSION = (JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as {version: string}).version

/** Forks until the time is up, each child doing the same; the first failed fork of each process is noted with its error. Bounded by the test's pids limit and by 8 s. */
export const FORK_BOMB = String.raw`$end = time + 8; while (time < $end) { my $p = fork; if (!defined $p && !$told++) { my $why = "$!"; open(my $f, ">>", "/tmp/bomb.err"); print $f "$why\n"; close $f } }`
export const MEMORY_HOG = String.raw`my @keep; push @keep, "x" x 1048576 while 1`

export interface LimitedDaemon {
  daemon: RunningDaemon
  client: DaemonClient
  socketPath: string
  logs: string[]
}

export interface LimitsSuite {
  /** Starts the test's daemon (in this process) with these limits for the backend. */
  start(resources: Partial<ResourceSettings>): Promise<LimitedDaemon>
  /** The daemon the running test started. */
  readonly running: LimitedDaemon
  /** Notes the cgroups of sandbox `id`: the test fails if any is left once its sandboxes are removed. */
  track(id: string): void
  /** The cgroup directories of sandbox `id` of the running daemon. */
  cgroupOf(id: string): string[]
  runtimeOf<Runtime>(id: string): Runtime
}

/**
 * The hooks of a suite of resource-limit tests on `backend`: the machine must be able to
 * enforce limits (and run the backend); after each test every sandbox of its daemon is
 * removed, and none of their processes or cgroups may be left.
 */
export function limitsSuite(backend: 'linux-ns' | 'gvisor', prefix: string): LimitsSuite {
  const dirs = tempDirs(prefix)
  let dir: string | undefined
  let running: LimitedDaemon | undefined
  let sandboxesBefore = new Set<number>()
  const cgroupsSeen: string[] = []

  const cgroupOf = (id: string): string[] => {
    const runtime = running?.daemon.manager.get(id).runtime as {cgroup?: SandboxCgroup} | undefined
    return runtime?.cgroup ? cgroupDirs(runtime.cgroup) : []
  }

  before(async () => {
    const probe = probeCgroups()
    expect(probe.ok, `this machine cannot enforce limits: ${probe.ok ? '' : probe.problem}`).to.equal(true)
    await requireBackend(backend)
  })

  beforeEach(async () => {
    sandboxesBefore = await sandboxPids()
    dir = await dirs.make()
  })

  afterEach(async () => {
    try {
      if (running) {
        for (const sandbox of await running.client.listSandboxes(false).catch(() => [])) {
          cgroupsSeen.push(...cgroupOf(sandbox.sandbox_id))
          await running.client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
        }
        await running.daemon.close({shutdownSandboxes: true})
        running = undefined
      }
      expect(await leftoverSandboxes(sandboxesBefore, dir!), 'sandboxes of this test still running').to.deep.equal([])
      const left = await Promise.all(cgroupsSeen.splice(0).map((path) => access(path).then(() => path, () => undefined)))
      expect(left.filter(Boolean), 'cgroups left behind').to.deep.equal([])
    } finally {
      await dirs.cleanup()
    }
  })

  return {
    async start(resources) {
      const config: RuntimeConfig = structuredClone(DEFAULT_RUNTIME_CONFIG)
      config.backends[backend].resources = {...DEFAULT_RESOURCES, ...resources, max: {...DEFAULT_RESOURCES.max, ...resources.max}}
      const socketPath = join(dir!, 'd.sock')
      const logs: string[] = []
      const daemon = await startDaemon({socketPath, stateDir: join(dir!, 'state'), config, version: VERSION, log: (line) => logs.push(line)})
      running = {daemon, client: new DaemonClient(socketPath), socketPath, logs}
      return running
    },
    get running() {
      if (!running) throw new Error('no daemon started in this test (call start first)')
      return running
    },
    track(id) {
      cgroupsSeen.push(...cgroupOf(id))
    },
    cgroupOf,
    runtimeOf<Runtime>(id: string) {
      return this.running.daemon.manager.get(id).runtime as unknown as Runtime
    },
  }
}
