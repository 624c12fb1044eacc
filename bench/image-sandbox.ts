/**
 * Sandboxes on an image (also run standalone: `node --import tsx bench/image-sandbox.ts`):
 * TTI of `cleanroom exec -- true` in a new sandbox on a cached image (busybox-static,
 * imported) against the same on the host's root filesystem, daemon warm; on gvisor, where
 * this machine runs it, a create through the API until ready on the image against one on
 * the host's root filesystem; then the RSS per idle image sandbox at 50.
 */
import {execFileSync, spawn} from 'node:child_process'
import {mkdir, mkdtemp, readFile, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'
import {pathToFileURL} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {importThroughDaemon} from '../src/images/client.js'
import {DEFAULT_RUNTIME_CONFIG} from '../src/config/schema.js'
import {DEFAULT_POLICY, withImage} from '../src/policy/compile.js'
import {createBackends} from '../src/sandbox/backends/index.js'
import {tarOf} from '../test/images/images.js'
import {benchEnv, command, compare, type Comparison, memoryOf, renderComparison} from './harness.js'

const RUN = new URL('../bin/run.js', import.meta.url).pathname
const IDLE = 50

const policy = (image?: string) =>
  `version: 1\nsandbox:\n${image ? `  image:\n    ref: "${image}"\n` : ''}  network:\n    default: deny\n    allow:\n      - host: registry.npmjs.org\n        ports: [443]\n`

export interface ImageSandboxResults {
  tti: Comparison
  /** Absent when this machine cannot run gvisor (`skipped` says why). */
  gvisorCreate?: Comparison
  gvisorSkipped?: string
  density: {values: Record<string, number>; goal: {description: string; met: boolean}}
}

export async function imageSandboxComparisons(options: {runs: number}): Promise<ImageSandboxResults> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-image-sandbox-'))
  const env = benchEnv(home)
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: 'ignore'})
  const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
  try {
    await waitFor(() => client.ping())
    const rootfs = await tarOf([
      {name: 'bin/', type: 'directory'},
      {name: 'bin/busybox', content: await readFile('/bin/busybox'), mode: 0o755},
      {name: 'bin/sh', type: 'symlink', linkname: 'busybox'},
      {name: 'bin/true', type: 'symlink', linkname: 'busybox'},
      {name: 'etc/', type: 'directory'},
      {name: 'tmp/', type: 'directory', mode: 0o1777},
    ])
    const image = await importThroughDaemon(client, 'local/bench-busybox:1', 'rootfs', Readable.from([rootfs]))
    const ref = `docker.io/local/bench-busybox@${image.manifest_digest}`
    const repos = {host: join(home, 'host-repo'), image: join(home, 'image-repo')}
    for (const [kind, repo] of Object.entries(repos)) {
      await mkdir(repo, {recursive: true})
      execFileSync('git', ['init', '-q', repo])
      await writeFile(join(repo, 'README'), 'bench\n')
      await writeFile(join(repo, 'cleanroom.yaml'), policy(kind === 'image' ? ref : undefined))
    }
    const execIn = (dir: string) => command([process.execPath, RUN, 'exec', '-c', dir, '--', 'true'], env)
    const tti = await compare(
      'time to interactive on an image: cleanroom exec -- true in a new sandbox, image cached, daemon warm',
      [
        {name: "host's root filesystem", run: execIn(repos.host)},
        {name: 'busybox image', run: execIn(repos.image)},
      ],
      {runs: options.runs, goal: {variant: 'busybox image', maxRatio: 1.2}},
    )

    const imagePolicy = withImage(DEFAULT_POLICY, ref)
    const gvisor = await createBackends(DEFAULT_RUNTIME_CONFIG).get('gvisor')!.availability()
    let gvisorCreate: Comparison | undefined
    if (gvisor.ok) {
      // Each variant removes its previous sandbox before the next timed create, untimed.
      const createOn = (policy: typeof DEFAULT_POLICY, repo: string) => {
        let last: string | undefined
        return {
          prepare: async () => {
            if (last !== undefined) await client.removeSandbox(last)
            last = undefined
          },
          run: async () => {
            last = (await client.createSandbox({backend: 'gvisor', policy, workspace_source: repo})).sandbox_id
          },
        }
      }
      gvisorCreate = await compare(
        'gvisor: POST /v1/sandboxes until ready, on a cached image',
        [
          {name: "host's root filesystem", ...createOn(DEFAULT_POLICY, repos.host)},
          {name: 'busybox image', ...createOn(imagePolicy, repos.image)},
        ],
        {runs: options.runs},
      )
      for (const sandbox of await client.listSandboxes(false)) await client.removeSandbox(sandbox.sandbox_id)
    }
    const before = await memoryOf(daemon.pid!)
    for (let i = 0; i < IDLE; i++) await client.createSandbox({policy: imagePolicy, workspace_source: repos.image})
    await sleep(200)
    const after = await memoryOf(daemon.pid!)
    const perSandbox = (after.children - before.children) / IDLE / 1024
    return {
      tti,
      ...(gvisorCreate ? {gvisorCreate} : {gvisorSkipped: gvisor.problem ?? 'unavailable'}),
      density: {
        values: {[`per_image_sandbox_rss_mib_at_${IDLE}`]: perSandbox, [`daemon_rss_mib_at_${IDLE}_image_sandboxes`]: after.daemon / 1024},
        goal: {description: `<= 5 MiB per idle image sandbox at ${IDLE} (measured ${perSandbox.toFixed(2)} MiB)`, met: perSandbox <= 5},
      },
    }
  } finally {
    for (const sandbox of await client.listSandboxes(false).catch(() => [])) await client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await rm(home, {recursive: true, force: true})
  }
}
async function waitFor(probe: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await probe().then(() => true, () => false)) return
    await sleep(25)
  }
  throw new Error('the daemon did not start')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const results = await imageSandboxComparisons({runs: Number(process.env.BENCH_RUNS ?? 20)})
  console.log(renderComparison(results.tti))
  console.log(results.gvisorCreate ? renderComparison(results.gvisorCreate) : `gvisor comparison left out: ${results.gvisorSkipped}`)
  for (const [key, value] of Object.entries(results.density.values)) console.log(`  ${key.padEnd(36)} ${value.toFixed(2)}`)
  console.log(`  goal: ${results.density.goal.description}: ${results.density.goal.met ? 'MET' : 'MISSED'}`)
}
