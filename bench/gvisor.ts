/**
 * The gvisor backend against bare runsc on this machine (bench/README.md): a create
 * until ready against `runsc run --detach` of a bundle with the same root filesystem,
 * mounts and runsc flags; an exec of `true` against `runsc exec`; the CLI against
 * `node -e 0` plus `runsc do`; the memory of 10 and of 50 idle sandboxes by process
 * (gvisor-memory.ts); and egress from inside a gvisor sandbox against a linux-ns one.
 * Also runnable alone, after `npm run build`: `node --import tsx bench/gvisor.ts`, and
 * in part: `BENCH_GVISOR=create,memory node --import tsx bench/gvisor.ts`.
 */
import {execFileSync, fork, spawn} from 'node:child_process'
import {chmod, mkdir, mkdtemp, rm, symlink, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {DEFAULT_RUNTIME_CONFIG} from '../src/config/schema.js'
import {recompilePolicy} from '../src/policy/compile.js'
import {createBackends} from '../src/sandbox/backends/index.js'
import {processSpec} from '../src/sandbox/backends/gvisor/bundle.js'
import {runscFlags} from '../src/sandbox/backends/gvisor/provision.js'
import {SANDBOX_HOSTNAME, SANDBOX_PATH, SANDBOX_USER, sandboxRootfs, STATE_LAYOUT} from '../src/sandbox/layout.js'
import {idleMemory, type IdleMemory, renderIdleMemory} from './gvisor-memory.js'
import {benchEnv, command, compare, type Comparison, renderComparison} from './harness.js'

const RUN = fileURLToPath(new URL('../bin/run.js', import.meta.url))
/** The memory report's counts of idle sandboxes alive at once. */
const IDLE_SANDBOXES = [10, 50] as const
const DOWNLOAD_MIB = 64
/** The bare container's root on the host: past the range sandbox uids are claimed from (200,000–265,535) and their files' uids. */
const BARE_ROOT_UID = 400_000

/** The parts of the run, in the order they run; BENCH_GVISOR=create,memory runs only those. */
export const GVISOR_PARTS = ['create', 'exec', 'cli', 'memory', 'egress'] as const
export type GvisorPart = (typeof GVISOR_PARTS)[number]

/** Each part measured; a part left out of the run is undefined. */
export interface GvisorBench {
  create?: Comparison
  exec?: Comparison
  cli?: Comparison
  /** Per idle sandbox, at each count in IDLE_SANDBOXES. */
  memory?: IdleMemory[]
  egressFirstByte?: Comparison
  egressDownload?: Comparison
}

export interface GvisorBenchOptions {
  client: DaemonClient
  repo: string
  runs: number
  env: NodeJS.ProcessEnv
  /** All of them when undefined. */
  parts?: ReadonlySet<GvisorPart>
}

/** Undefined, with the reason printed, where this machine cannot run the gvisor backend. */
export async function gvisorComparisons(options: GvisorBenchOptions): Promise<GvisorBench | undefined> {
  const backend = createBackends(DEFAULT_RUNTIME_CONFIG).get('gvisor')!
  const availability = await backend.availability()
  if (!availability.ok) {
    console.log(`gvisor comparisons left out: ${availability.problem}`)
    return undefined
  }
  const {client, repo, runs, env} = options
  const wanted = (part: GvisorPart) => options.parts === undefined || options.parts.has(part)
  const bench: GvisorBench = {}
  const runsc = DEFAULT_RUNTIME_CONFIG.backends.gvisor.runsc_path
  const platform = DEFAULT_RUNTIME_CONFIG.backends.gvisor.platform
  // Short: runsc's control sockets live under its root and are capped at 107 bytes.
  const dir = await mkdtemp(join(tmpdir(), 'crgv-'))
  const flags = runscFlags(dir, platform)
  const bare: string[] = []
  const sandboxes: string[] = []
  const removeBare = async (id: string) => {
    await command([runsc, ...flags, 'delete', '-force', id])().catch(() => undefined)
    if (bare.includes(id)) bare.splice(bare.indexOf(id), 1)
  }
  const remove = async (id: string) => {
    await client.removeSandbox(id).catch(() => undefined)
    if (sandboxes.includes(id)) sandboxes.splice(sandboxes.indexOf(id), 1)
  }
  const create = async () => {
    const id = (await client.createSandbox({repository: repo, backend: 'gvisor'})).sandbox_id
    sandboxes.push(id)
    return id
  }
  let bareCount = 0
  const startBare = async () => {
    const id = `bench-${++bareCount}`
    bare.push(id)
    await command([runsc, ...flags, 'run', '--detach', '--bundle', join(dir, 'bundle'), id])()
    return id
  }
  try {
    await writeBareBundle(dir)
    if (wanted('create')) bench.create = await compare(
      'gvisor: create until ready, against runsc run --detach of the same bundle',
      [
        {name: 'runsc run --detach', prepare: async () => void (await Promise.all(bare.map(removeBare))), run: async () => void (await startBare())},
        {name: 'POST /v1/sandboxes, gvisor', prepare: async () => void (await Promise.all(sandboxes.map(remove))), run: async () => void (await create())},
      ],
      {runs, goal: {variant: 'POST /v1/sandboxes, gvisor', maxRatio: 1.3}},
    )
    for (const id of [...bare]) await removeBare(id)
    for (const id of [...sandboxes]) await remove(id)

    if (wanted('exec')) {
      const container = await startBare()
      const sandbox = await create()
      bench.exec = await compare(
        'gvisor: exec `true` in a running sandbox, against runsc exec',
        [
          {name: 'runsc exec CONTAINER /bin/true', run: command([runsc, ...flags, 'exec', container, '/bin/true'])},
          {name: 'POST /v1/sandboxes/ID/run, gvisor', run: async () => void (await client.run(sandbox, {argv: ['true'], env: {}}))},
        ],
        {runs, goal: {variant: 'POST /v1/sandboxes/ID/run, gvisor', maxRatio: 1.3}},
      )
      await removeBare(container)
      await remove(sandbox)
    }

    const nodeNoop = command([process.execPath, '-e', '0'])
    const runscDo = command([runsc, ...flags, 'do', '/bin/true'])
    if (wanted('cli')) bench.cli = await compare(
      'gvisor: cleanroom exec --backend gvisor -- true, against node -e 0 + runsc do /bin/true',
      [
        {name: 'node -e 0 + runsc do /bin/true', run: async () => { await nodeNoop(); await runscDo() }},
        {name: 'cleanroom exec --backend gvisor -- true', run: command([process.execPath, RUN, 'exec', '-c', repo, '--backend', 'gvisor', '--', 'true'], env)},
      ],
      {runs, goal: {variant: 'cleanroom exec --backend gvisor -- true', maxRatio: 1.2}},
    )

    if (wanted('memory')) {
      bench.memory = await idleMemory(IDLE_SANDBOXES, create)
      for (const id of [...sandboxes]) await remove(id)
    }

    if (wanted('egress')) Object.assign(bench, await egressComparisons(client, repo, runs))
    return bench
  } finally {
    for (const id of [...bare]) await removeBare(id)
    for (const id of [...sandboxes]) await remove(id)
    await rm(dir, {recursive: true, force: true})
  }
}

/**
 * `<dir>/bundle/config.json` and its root: the backend's root filesystem (sandboxRootfs:
 * the host's /usr, /opt and lib dirs read-only, merged-usr links, /proc, gVisor's /dev,
 * /etc, /tmp, /workspace and home), with the sandbox's own dirs made under `dir`, and
 * a process that sleeps where the backend runs its init. The same namespaces, the
 * user namespace mapping root and the sandbox user to two host uids of its own.
 */
export async function writeBareBundle(dir: string): Promise<void> {
  // The gofer runs as the mapped root: it must reach the root and the mounts' sources.
  await chmod(dir, 0o755)
  const state = join(dir, 'state')
  const root = join(dir, 'rootfs')
  await Promise.all([mkdir(root, {recursive: true}), mkdir(join(dir, 'bundle'))])
  const mounts: Record<string, unknown>[] = []
  for (const mount of await sandboxRootfs(state)) {
    if (mount.kind === 'symlink') {
      await symlink(mount.linkTarget, join(root, mount.target))
      continue
    }
    await mkdir(join(root, mount.target), {recursive: true})
    if (!('source' in mount)) {
      mounts.push(mount.kind === 'proc' ? {destination: mount.target, type: 'proc', source: 'proc'} : {destination: mount.target, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'mode=755']})
    } else {
      // The backend's /etc is its generated files over the host's (an overlay nsinit makes): the host's here.
      const source = mount.source === join(state, STATE_LAYOUT.etcMerged) ? '/etc' : mount.source
      if (source.startsWith(state)) await mkdir(source, {recursive: true, mode: 0o777})
      mounts.push({destination: mount.target, type: 'bind', source, options: ['rbind', mount.kind === 'ro-bind' ? 'ro' : 'rw']})
    }
  }
  const ids = [{containerID: 0, hostID: BARE_ROOT_UID, size: 1}, {containerID: SANDBOX_USER.uid, hostID: BARE_ROOT_UID + 1, size: 1}]
  const spec = {
    ociVersion: '1.0.2',
    process: processSpec({uid: 0, args: ['/usr/bin/sleep', 'infinity'], env: {PATH: SANDBOX_PATH}}),
    root: {path: root, readonly: true},
    hostname: SANDBOX_HOSTNAME,
    mounts,
    linux: {namespaces: ['pid', 'network', 'ipc', 'uts', 'mount', 'user'].map((type) => ({type})), uidMappings: ids, gidMappings: ids},
  }
  await writeFile(join(dir, 'bundle', 'config.json'), JSON.stringify(spec))
}

/**
 * Egress from inside a sandbox of each backend, through its proxy to a server on the
 * host's loopback (bench/egress-peer.ts's target), timed by curl inside the sandbox so
 * the exec's own cost is not counted: time to first byte of a small GET on a new
 * CONNECT tunnel, and a 64 MiB download. Batches alternate between the backends.
 */
async function egressComparisons(client: DaemonClient, repo: string, runs: number): Promise<{egressFirstByte: Comparison; egressDownload: Comparison}> {
  const peer = fork(fileURLToPath(new URL('egress-peer.ts', import.meta.url)), {execArgv: ['--import', 'tsx'], stdio: 'ignore'})
  const ids: Record<string, string> = {}
  try {
    const {port} = await new Promise<{port: number}>((resolve) => peer.once('message', (message) => resolve(message as {port: number})))
    const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [port]}], deny: []})
    for (const backend of ['linux-ns', 'gvisor'] as const) ids[backend] = (await client.createSandbox({backend, policy, workspace_source: repo})).sandbox_id
    const curl = (backend: string, path: string, field: string, count: number) => async (): Promise<number[]> => {
      const one = `curl -sS -o /dev/null --noproxy '' --proxytunnel --proxy "$HTTP_PROXY" -w '%{${field}}\\n' http://127.0.0.1:${port}${path}`
      const result = await client.run(ids[backend]!, {argv: ['sh', '-c', `for i in $(seq ${count}); do ${one} || exit 1; done`], env: {}})
      if (result.exit_code !== 0) throw new Error(`curl in the ${backend} sandbox failed: ${result.stderr.trim()}`)
      return result.stdout.trim().split('\n').map((seconds) => Number(seconds) * 1000)
    }
    const batches = async (title: string, path: string, field: string, perBatch: number, rounds: number): Promise<Comparison> => {
      const samples: Record<string, number[]> = {'linux-ns': [], gvisor: []}
      for (let round = 0; round < rounds + 1; round++) {
        for (const backend of ['linux-ns', 'gvisor']) {
          const measured = await curl(backend, path, field, perBatch)()
          // The first round warms up both.
          if (round > 0) samples[backend]!.push(...measured)
        }
      }
      return fromSamples(title, samples)
    }
    const egressFirstByte = await batches('gvisor: egress, first byte of a small GET through the proxy, from inside the sandbox', '/', 'time_starttransfer', 20, Math.max(3, Math.ceil(runs / 10)))
    const egressDownload = await batches(`gvisor: egress, a ${DOWNLOAD_MIB} MiB download through the proxy, from inside the sandbox`, `/big?mib=${DOWNLOAD_MIB}`, 'time_total', 1, Math.min(runs, 10))
    return {egressFirstByte, egressDownload}
  } finally {
    for (const id of Object.values(ids)) await client.removeSandbox(id).catch(() => undefined)
    peer.disconnect()
  }
}

function fromSamples(title: string, samples: Record<string, number[]>): Comparison {
  const results = Object.entries(samples).map(([name, values]) => {
    const sorted = values.toSorted((a, b) => a - b)
    const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
    return {name, stats: {runs: sorted.length, median: at(0.5), p95: at(0.95), min: sorted[0]!}, ratio: 1}
  })
  for (const result of results) result.ratio = result.stats.median / results[0]!.stats.median
  return {title, results}
}

/** What to print of a run, shared by `npm run bench` and the standalone run. */
export function renderGvisorBench(bench: GvisorBench): string {
  const lines = [bench.create, bench.exec, bench.cli, bench.egressFirstByte, bench.egressDownload].flatMap((comparison) => (comparison ? [renderComparison(comparison)] : []))
  for (const memory of bench.memory ?? []) lines.push(...renderIdleMemory(memory))
  const download = bench.egressDownload
  if (download) {
    const speed = (i: number) => DOWNLOAD_MIB / (download.results[i]!.stats.median / 1000)
    lines.push(`## gvisor: egress download speed: linux-ns ${speed(0).toFixed(0)} MiB/s, gvisor ${speed(1).toFixed(0)} MiB/s (${(speed(1) / speed(0)).toFixed(2)}x)`)
  }
  return lines.join('\n')
}

/** The parts BENCH_GVISOR names (comma-separated), or all of them. */
export function gvisorParts(value: string | undefined): Set<GvisorPart> {
  if (!value) return new Set(GVISOR_PARTS)
  const parts = value.split(',').map((part) => part.trim())
  const unknown = parts.filter((part) => !(GVISOR_PARTS as readonly string[]).includes(part))
  if (unknown.length > 0) throw new Error(`BENCH_GVISOR: ${unknown.join(', ')} is not a part of the gvisor run (${GVISOR_PARTS.join(', ')})`)
  return new Set(parts as GvisorPart[])
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-gvisor-'))
  const env = benchEnv(home)
  const repo = join(home, 'repo')
  await mkdir(repo)
  execFileSync('git', ['init', '-q', repo])
  await writeFile(join(repo, 'README'), 'bench\n')
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: 'ignore'})
  const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
  try {
    for (let i = 0; !(await client.ping().then(() => true, () => false)); i++) {
      if (i > 400) throw new Error('the daemon did not start')
      await sleep(25)
    }
    const bench = await gvisorComparisons({client, repo, runs: Number(process.env.BENCH_RUNS ?? 20), env, parts: gvisorParts(process.env.BENCH_GVISOR)})
    if (bench) console.log(renderGvisorBench(bench))
  } finally {
    for (const sandbox of await client.listSandboxes(false).catch(() => [])) await client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await rm(home, {recursive: true, force: true})
  }
}
