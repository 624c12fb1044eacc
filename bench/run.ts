/**
 * `npm run bench`: measures cleanroom against its baselines on this machine,
 * alternating the commands compared, and writes the results to
 * bench/results/<date>-<commit>.json. See bench/README.md.
 */
import {execFileSync, spawn} from 'node:child_process'
import {randomFillSync} from 'node:crypto'
import {mkdir, mkdtemp, open, readFile, rm, symlink, writeFile} from 'node:fs/promises'
import {cpus, tmpdir, totalmem} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {DEFAULT_POLICY} from '../src/policy/compile.js'
import {agentComparisons} from './agent.js'
import {backendComparisons} from './backends.js'
import {egressComparisons} from './egress.js'
import {gatewayComparisons} from './gateway.js'
import {gvisorComparisons, renderGvisorBench} from './gvisor.js'
import {RSS_GOAL_MIB} from './gvisor-memory.js'
import {imageComparison} from './images.js'
import {imageSandboxComparisons} from './image-sandbox.js'
import {seccompComparisons} from './seccomp.js'
import {benchEnv, command, compare, type Comparison, installed, memoryOf, renderComparison, type Variant} from './harness.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RUN = join(ROOT, 'bin/run.js')
const RUNS = Number(process.env.BENCH_RUNS ?? 30)
const BENCH_POLICY = `version: 1
sandbox:
  network:
    default: deny
    allow:
      - host: registry.npmjs.org
        ports: [443]
        reason: npm install
      - host: "*.githubusercontent.com"
        ports: [443]
`

interface Measurement {
  title: string
  values: Record<string, number>
  goal?: {description: string; met: boolean}
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-'))
  const env = benchEnv(home)
  const socketPath = join(home, 'run/cleanroom/cleanroom.sock')
  const repo = join(home, 'repo')
  await mkdir(repo, {recursive: true})
  execFileSync('git', ['init', '-q', repo])
  await writeFile(join(repo, 'README'), 'bench\n')
  // A policy like a real repository's, so every new sandbox pays for finding and compiling one.
  await writeFile(join(repo, 'cleanroom.yaml'), BENCH_POLICY)

  // The daemon's log says where each create's time went; the create comparison reads it.
  const daemonLog = join(home, 'daemon.log')
  const logFile = await open(daemonLog, 'w')
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: ['ignore', 'ignore', logFile.fd]})
  await logFile.close()
  const client = new DaemonClient(socketPath)
  const comparisons: Comparison[] = []
  const measurements: Measurement[] = []
  try {
    await waitForDaemon(client)
    const cli = (...args: string[]) => command([process.execPath, RUN, ...args], env)
    // `exec -c REPO … -- true`: the flags before the command.
    const execIn = (dir: string, ...args: string[]) => command([process.execPath, RUN, 'exec', '-c', dir, ...args, '--', 'true'], env)
    const bwrapTrue = command(['bwrap', '--unshare-all', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--symlink', 'usr/bin', '/bin', '--proc', '/proc', '--dev', '/dev', '/bin/true'])
    const nodeNoop = command([process.execPath, '-e', '0'])

    const report = (comparison: Comparison) => {
      comparisons.push(comparison)
      console.log(renderComparison(comparison))
    }

    // The same commands through oclif (CLEANROOM_FAST_START=0) show what the fast start path saves.
    const fullStart = {...env, CLEANROOM_FAST_START: '0'}
    report(
      await compare(
        'CLI cold start',
        [
          {name: 'node -e 0', run: nodeNoop},
          {name: 'cleanroom --version', run: cli('--version')},
          {name: 'cleanroom --version, through oclif', run: command([process.execPath, RUN, '--version'], fullStart)},
        ],
        {runs: RUNS, goal: {variant: 'cleanroom --version', maxRatio: 1.5}},
      ),
    )

    report(
      await compare(
        'time to interactive: a new sandbox runs `true` (daemon warm)',
        [
          {name: 'node -e 0', run: nodeNoop},
          {name: 'cleanroom exec -- true', run: execIn(repo)},
          {name: 'bwrap /bin/true', run: bwrapTrue},
          ...peers(),
        ],
        {runs: RUNS, goal: {variant: 'cleanroom exec -- true', maxRatio: 2}},
      ),
    )

    const kept = await client.createSandbox({repository: repo})
    const execPeers = await startExecPeers(home)
    try {
      report(
        await compare(
          'exec into an existing sandbox',
          [
            {name: 'node -e 0', run: nodeNoop},
            {name: 'cleanroom exec --sandbox-id ID -- true', run: cli('exec', '--sandbox-id', kept.sandbox_id, '--', 'true')},
            {name: 'the same, through oclif', run: command([process.execPath, RUN, 'exec', '--sandbox-id', kept.sandbox_id, '--', 'true'], fullStart)},
            ...execPeers.variants,
          ],
          {runs: RUNS, goal: {variant: 'cleanroom exec --sandbox-id ID -- true', maxRatio: 1.5}},
        ),
      )
    } finally {
      await execPeers.stop()
    }

    const created: string[] = []
    report(
      await compare(
        'daemon side: create a sandbox (API call until ready)',
        [
          {name: 'bwrap /bin/true', run: bwrapTrue},
          {name: 'POST /v1/sandboxes', run: async () => void created.push((await client.createSandbox({repository: repo})).sandbox_id)},
        ],
        {runs: RUNS, goal: {variant: 'POST /v1/sandboxes', maxRatio: 3}},
      ),
    )
    measurements.push({title: 'daemon side create: where the time goes (medians, ms)', values: await createPhases(daemonLog, created)})
    for (const id of created.splice(0)) await client.removeSandbox(id)

    const initPid = await initPidOf(home, kept.sandbox_id)
    report(
      await compare(
        'daemon side: exec `true` in an existing sandbox (API call until exit)',
        [
          {name: 'nsenter -t INIT -m -u -i -n -p /bin/true', run: command(['nsenter', '-t', String(initPid), '-m', '-u', '-i', '-n', '-p', '/bin/true'])},
          {name: 'POST /v1/sandboxes/ID/run', run: async () => void (await client.run(kept.sandbox_id, {argv: ['true'], env: {}}))},
        ],
        {runs: RUNS, goal: {variant: 'POST /v1/sandboxes/ID/run', maxRatio: 2}},
      ),
    )
    await client.removeSandbox(kept.sandbox_id)

    // Density and scaling: RSS with N idle sandboxes, and TTI with N already running.
    const idle: string[] = []
    const density: Record<string, number> = {}
    const scaling: Record<string, number> = {}
    for (const target of [0, 1, 10, 50]) {
      while (idle.length < target) idle.push((await client.createSandbox({policy: DEFAULT_POLICY, workspace_source: repo})).sandbox_id)
      await sleep(200)
      const memory = await memoryOf(daemon.pid!)
      density[`daemon_rss_mib_at_${target}`] = memory.daemon / 1024
      if (target > 0) density[`per_sandbox_rss_mib_at_${target}`] = memory.children / target / 1024
      if (target === 0 || target === 10 || target === 50) {
        const tti = await compare(`TTI with ${target} sandboxes running`, [{name: 'cleanroom exec -- true', run: execIn(repo)}], {runs: Math.max(10, Math.floor(RUNS / 2))})
        scaling[`tti_ms_with_${target}_running`] = tti.results[0]!.stats.median
      }
    }
    const perSandbox = density.per_sandbox_rss_mib_at_50!
    measurements.push({title: 'density (RSS)', values: density, goal: {description: `<= 5 MiB per idle sandbox at 50 (measured ${perSandbox.toFixed(2)} MiB)`, met: perSandbox <= 5}})
    const flat = scaling.tti_ms_with_50_running! / scaling.tti_ms_with_0_running!
    measurements.push({title: 'scaling', values: {...scaling, ratio_50_to_0: flat}, goal: {description: `TTI with 50 running <= 1.2x TTI with 0 (measured ${flat.toFixed(2)}x)`, met: flat <= 1.2}})
    for (const id of idle) await client.removeSandbox(id)

    // A 1 GiB repository must not make sandbox creation slower.
    const bigRepo = join(home, 'big-repo')
    await makeBigRepo(bigRepo, 1024)
    const bigRepoComparison = await compare(
      'TTI: empty repository vs 1 GiB repository',
      [
        {name: 'exec -- true (small repo)', run: execIn(repo)},
        {name: 'exec -- true (1 GiB repo)', run: execIn(bigRepo)},
      ],
      {runs: RUNS, goal: {variant: 'exec -- true (1 GiB repo)', maxRatio: 1.2}},
    )
    report(bigRepoComparison)

    const egress = await egressComparisons(RUNS)
    report(egress.latency)
    report(egress.throughput)
    const added = egress.latency.results[1]!.stats.median - egress.latency.results[0]!.stats.median
    const speed = (comparison: Comparison, i: number) => 256 / (comparison.results[i]!.stats.median / 1000)
    const ratio = speed(egress.throughput, 1) / speed(egress.throughput, 0)
    measurements.push({
      title: 'egress proxy',
      values: {
        added_latency_ms: added,
        direct_mib_per_s: speed(egress.throughput, 0),
        proxied_mib_per_s: speed(egress.throughput, 1),
        throughput_ratio: ratio,
        // Where a proxied download's time goes: the relaying process's own CPU, user and kernel.
        relay_wall_ms: egress.relayCpu.wall_ms,
        relay_cpu_user_ms: egress.relayCpu.user_ms,
        relay_cpu_system_ms: egress.relayCpu.system_ms,
      },
      goal: {description: `added latency <= 1.5 ms (measured ${added.toFixed(2)} ms) and throughput >= 0.8x direct (measured ${ratio.toFixed(2)}x)`, met: added <= 1.5 && ratio >= 0.8},
    })

    const gateway = await gatewayComparisons(RUNS)
    report(gateway.firstByte)
    report(gateway.throughput)
    const addedFirstByte = gateway.firstByte.results[1]!.stats.median - gateway.firstByte.results[0]!.stats.median
    const streamRatio = gateway.throughput.results[0]!.stats.median / gateway.throughput.results[1]!.stats.median
    measurements.push({
      title: 'credential gateway',
      values: {
        added_first_byte_ms: addedFirstByte,
        direct_mib_per_s: 256 / (gateway.throughput.results[0]!.stats.median / 1000),
        gateway_mib_per_s: 256 / (gateway.throughput.results[1]!.stats.median / 1000),
        throughput_ratio: streamRatio,
        gateway_cpu_ms_per_stream: gateway.streamCpu.median,
      },
      goal: {description: `added time to first byte <= 2 ms (measured ${addedFirstByte.toFixed(2)} ms) and streaming throughput >= 0.9x direct (measured ${streamRatio.toFixed(2)}x)`, met: addedFirstByte <= 2 && streamRatio >= 0.9},
    })

    const seccomp = await seccompComparisons(RUNS)
    report(seccomp.syscalls)
    measurements.push({
      title: 'seccomp filter',
      values: {
        install_median_us: seccomp.cost.median_us,
        install_p95_us: seccomp.cost.p95_us,
        getppid_plain_ns: seccomp.cost.plain_ns,
        getppid_filtered_ns: seccomp.cost.filtered_ns,
      },
      goal: {description: `installing it <= 1 ms (measured ${(seccomp.cost.median_us / 1000).toFixed(3)} ms)`, met: seccomp.cost.median_us <= 1000},
    })

    const backends = await backendComparisons({client, repo, runs: Math.min(RUNS, 20), cli})
    for (const comparison of [backends.create, backends.exec, backends.execApi]) report(comparison)
    measurements.push({title: 'backends: RSS per idle sandbox (MiB)', values: Object.fromEntries(Object.entries(backends.rssPerSandboxKib).map(([name, kib]) => [name, kib / 1024]))})
    for (const [name, problem] of Object.entries(backends.unavailable)) console.log(`backend ${name} left out: ${problem}`)

    const gvisor = await gvisorComparisons({client, repo, runs: Math.min(RUNS, 20), env})
    if (gvisor) {
      for (const comparison of [gvisor.create, gvisor.exec, gvisor.cli, gvisor.egressFirstByte, gvisor.egressDownload]) if (comparison) comparisons.push(comparison)
      console.log(renderGvisorBench(gvisor))
      for (const memory of gvisor.memory ?? []) {
        const rss = memory.rss.total! / 1024
        const prefixed = (prefix: string, values: Record<string, number>) => Object.fromEntries(Object.entries(values).map(([name, kib]) => [`${prefix} ${name}`, kib]))
        measurements.push({
          title: `gvisor: memory per idle sandbox, ${memory.sandboxes} sandboxes (KiB)`,
          values: {...prefixed('rss', memory.rss), ...prefixed('pss', memory.pss), ...prefixed('anon+shmem', memory.privateKib), mem_available_drop: memory.memAvailableDropKib},
          goal: {description: `RSS <= ${RSS_GOAL_MIB} MiB (measured ${rss.toFixed(1)} MiB)`, met: rss <= RSS_GOAL_MIB},
        })
      }
    }

    // Each round runs an agent start (~1.7 s): fewer runs than the other comparisons.
    const agent = await agentComparisons({env, repo, runs: Math.min(RUNS, 10)})
    report(agent.newSandbox)
    report(agent.keptSandbox)
    const beyond = (agent.disk.beyond_agent_writes_kib ?? Number.NaN) / 1024
    measurements.push({
      title: 'disk of a new agent sandbox after gemini --version (KiB)',
      values: agent.disk,
      goal: {description: `< 5 MiB beyond what the agent writes (measured ${beyond.toFixed(2)} MiB)`, met: beyond < 5},
    })

    // Each round pulls ~100 MiB into an empty cache: fewer runs than the other comparisons.
    report(await imageComparison({runs: Math.min(RUNS, 10)}))

    const onImage = await imageSandboxComparisons({runs: RUNS})
    report(onImage.tti)
    if (onImage.gvisorCreate) report(onImage.gvisorCreate)
    else console.log(`gvisor on an image left out: ${onImage.gvisorSkipped}`)
    measurements.push({title: 'density on an image (RSS)', ...onImage.density})

    for (const measurement of measurements) {
      console.log(`## ${measurement.title}`)
      for (const [key, value] of Object.entries(measurement.values)) console.log(`  ${key.padEnd(28)} ${value.toFixed(2)}`)
      if (measurement.goal) console.log(`  goal: ${measurement.goal.description}: ${measurement.goal.met ? 'MET' : 'MISSED'}`)
    }
  } finally {
    for (const sandbox of await client.listSandboxes(false).catch(() => [])) await client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await rm(home, {recursive: true, force: true})
  }

  const commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], {cwd: ROOT}).toString().trim()
  const date = new Date().toISOString().slice(0, 10)
  const machine = {cpus: cpus().length, cpu: cpus()[0]?.model ?? 'unknown', memory_gib: Math.round(totalmem() / 2 ** 30), node: process.version, kernel: execFileSync('uname', ['-r']).toString().trim()}
  const file = join(ROOT, 'bench/results', `${date}-${commit}.json`)
  await writeFile(file, `${JSON.stringify({date, commit, machine, runs: RUNS, comparisons, measurements}, null, 2)}\n`)
  console.log(`\nresults: ${file}`)
}

/**
 * The tools a user would pick instead, where this machine has them: podman
 * (runc, with the explicit ulimits these machines need, on the host's root
 * read-only through an overlay) and gVisor's `runsc do`. Missing ones are named.
 */
function peers(): Variant[] {
  const found: Variant[] = []
  const limits = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768']
  if (installed('podman')) found.push({name: 'podman run --rm --network none /bin/true', run: command(['podman', '--runtime', 'runc', 'run', '--rm', '--network', 'none', ...limits, '--rootfs', '/:O', '/bin/true'])})
  else console.log('  (podman not installed: apt-get install -y podman runc to compare with it)')
  if (installed('runsc')) found.push({name: 'runsc do /bin/true', run: command(['runsc', '--network=none', 'do', '/bin/true'])})
  else console.log('  (runsc not installed: apt-get install -y runsc to compare with gVisor)')
  return found
}

/**
 * Long-running containers of the peers, where installed, to exec into: podman
 * (runc, the host's root read-only through an overlay) and gVisor (`runsc run
 * -detach` of a bundle on the host's /usr). Stopped and removed by `stop`.
 */
async function startExecPeers(home: string): Promise<{variants: Variant[]; stop: () => Promise<void>}> {
  const variants: Variant[] = []
  const stops: (() => void)[] = []
  const quiet = {stdio: 'ignore' as const}
  if (installed('podman')) {
    const name = `cleanroom-bench-${process.pid}`
    const limits = ['--ulimit', 'nofile=20000:20000', '--ulimit', 'nproc=32768:32768']
    execFileSync('podman', ['--runtime', 'runc', 'run', '-d', '--name', name, '--network', 'none', ...limits, '--rootfs', '/:O', '/bin/sleep', 'infinity'], quiet)
    stops.push(() => execFileSync('podman', ['rm', '-f', '-t', '0', name], quiet))
    variants.push({name: 'podman exec CONTAINER /bin/true', run: command(['podman', 'exec', name, '/bin/true'])})
  } else {
    console.log('  (podman not installed: apt-get install -y podman runc to compare with podman exec)')
  }
  if (installed('runsc')) {
    const root = join(home, 'runsc-root')
    const bundle = join(home, 'runsc-bundle')
    const id = `cleanroom-bench-${process.pid}`
    const rootfs = join(home, 'runsc-rootfs')
    await mkdir(join(rootfs, 'usr'), {recursive: true})
    await mkdir(join(rootfs, 'proc'))
    for (const link of ['bin', 'lib', 'lib64', 'sbin']) await symlink(`usr/${link}`, join(rootfs, link))
    await mkdir(bundle, {recursive: true})
    await writeFile(join(bundle, 'config.json'), JSON.stringify(runscBundle(rootfs)))
    execFileSync('runsc', ['--root', root, '--network=none', 'run', '-detach', '-bundle', bundle, id], quiet)
    stops.push(() => {
      execFileSync('runsc', ['--root', root, 'kill', id, 'KILL'], quiet)
      execFileSync('runsc', ['--root', root, 'delete', '-force', id], quiet)
    })
    variants.push({name: 'runsc exec CONTAINER /bin/true', run: command(['runsc', '--root', root, 'exec', id, '/bin/true'])})
  } else {
    console.log('  (runsc not installed: apt-get install -y runsc to compare with runsc exec)')
  }
  return {
    variants,
    stop: async () => {
      for (const stop of stops) {
        try {
          stop()
        } catch {
          // already gone
        }
      }
    },
  }
}

/** An OCI bundle whose process sleeps, on `rootfs` (merged-usr links) with the host's /usr bound read-only, no network. */
function runscBundle(rootfs: string): Record<string, unknown> {
  return {
    ociVersion: '1.0.0',
    process: {user: {uid: 0, gid: 0}, args: ['/usr/bin/sleep', 'infinity'], env: ['PATH=/usr/bin:/bin'], cwd: '/'},
    root: {path: rootfs, readonly: true},
    mounts: [
      {destination: '/proc', type: 'proc', source: 'proc'},
      {destination: '/usr', type: 'bind', source: '/usr', options: ['rbind', 'ro']},
    ],
    linux: {namespaces: [{type: 'pid'}, {type: 'network'}, {type: 'ipc'}, {type: 'uts'}, {type: 'mount'}]},
  }
}

async function waitForDaemon(client: DaemonClient): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await client.ping().then(() => true, () => false)) return
    await sleep(25)
  }
  throw new Error('the daemon did not start')
}

/** The phases the daemon logged for each of `ids` ("ready … in T ms: backend B, egress listener E, state writes S"), as medians. */
async function createPhases(logPath: string, ids: string[]): Promise<Record<string, number>> {
  const wanted = new Set(ids)
  const phases: Record<string, number[]> = {total: [], backend: [], egress_listener: [], state_writes: []}
  for (const line of (await readFile(logPath, 'utf8')).split('\n')) {
    const match = /sandbox (cr_\w+): ready .* in ([\d.]+) ms: backend ([\d.]+), egress listener ([\d.]+), state writes ([\d.]+)/.exec(line)
    if (!match || !wanted.has(match[1]!)) continue
    const [total, backend, egress, state] = match.slice(2).map(Number)
    phases.total!.push(total!)
    phases.backend!.push(backend!)
    phases.egress_listener!.push(egress!)
    phases.state_writes!.push(state!)
  }
  const median = (values: number[]) => values.toSorted((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN
  return Object.fromEntries(Object.entries(phases).map(([name, values]) => [`${name}_ms`, median(values)]))
}

async function initPidOf(home: string, id: string): Promise<number> {
  const state = JSON.parse(await readFile(join(home, '.local/state/cleanroom/sandboxes', id, 'state.json'), 'utf8')) as {runtime: {init_pid: number}}
  return state.runtime.init_pid
}
/** A git repository holding `mib` MiB of real (random, uncompressible) data in 64 MiB files. */
async function makeBigRepo(dir: string, mib: number): Promise<void> {
  await mkdir(dir, {recursive: true})
  execFileSync('git', ['init', '-q', dir])
  const chunk = Buffer.alloc(1 << 20)
  for (let file = 0; file < mib / 64; file++) {
    const handle = await open(join(dir, `blob-${file}.bin`), 'w')
    for (let i = 0; i < 64; i++) {
      randomFillSync(chunk)
      await handle.write(chunk)
    }
    await handle.close()
  }
}

await main()
