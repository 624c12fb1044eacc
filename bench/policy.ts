/**
 * `node --import tsx bench/policy.ts`: what a repository's policy costs.
 * 1. Compiling a 20-rule policy in process (the parse and the checks).
 * 2. The daemon's policy step on its own, as the create request runs it
 *    (parseSandboxSource of the built daemon, in this process): its latency and
 *    the event-loop time it takes, for a 20-rule cleanroom.yaml.
 * 3. The daemon's hot path: `POST /v1/sandboxes` with a 20-rule cleanroom.yaml
 *    against the same create with no policy file to find and compile.
 * 4. The slowest files within the limits, and files over them: how long the
 *    answer takes (CPU time of this process, and wall time).
 * Needs a build (`npm run build`): the daemon runs as `cleanroom serve`.
 * CLEANROOM_BENCH_BUILD=<other checkout> measures that checkout's build in parts
 * 2 and 3, to compare two builds in one sitting. See bench/README.md.
 */
import {execFileSync, spawn} from 'node:child_process'
import {mkdir, mkdtemp, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {compilePolicyBytes, DEFAULT_POLICY} from '../src/policy/compile.js'
import {benchEnv, compare, renderComparison, stats} from './harness.js'

const BUILD = process.env.CLEANROOM_BENCH_BUILD ?? fileURLToPath(new URL('..', import.meta.url))
const RUN = join(BUILD, 'bin/run.js')
const RUNS = Number(process.env.BENCH_RUNS ?? 40)

/** Twenty allow rules in the forms people write: maps with reasons, host:port strings, wildcards. */
export function twentyRulePolicy(): string {
  const rules = Array.from({length: 20}, (_, i) =>
    i % 3 === 0 ? `      - "*.mirror${i}.example.com:443"` : i % 3 === 1 ? `      - {host: api${i}.example.com, ports: [443, 80], reason: service ${i}}` : `      - registry${i}.example.org:443`,
  )
  return ['version: 1', 'sandbox:', '  network:', '    default: deny', '    allow:', ...rules, '    deny:', '      - 169.254.169.254', ''].join('\n')
}

const rules = (count: number, form: (i: number) => string) => `version: 1\nsandbox:\n  network:\n    allow:\n${Array.from({length: count}, (_, i) => `      - ${form(i)}`).join('\n')}\n`

/** Files near or over the limits, each as slow to answer as its kind gets. */
const HARD_CASES: [string, Buffer][] = [
  ['1,024 map-form rules with reasons (legal)', Buffer.from(rules(1024, (i) => `{host: h${i}.example.com, ports: [443, 80, 8080], reason: the service number ${i}}`))],
  ['19,900 values in one flow list (legal values, unknown key)', Buffer.from(`version: 1\nx: [${Array.from({length: 19_900}, (_, i) => i).join(', ')}]\n`)],
  ['19,900 lines of comments (legal)', Buffer.from(`version: 1\n${'# a comment line\n'.repeat(19_900)}`)],
  ['9,900 unknown keys (50 listed, the rest counted)', Buffer.from(`version: 1\n${Array.from({length: 9900}, (_, i) => `k${i}: 1`).join('\n')}\n`)],
  ['1 MiB of "[" (over the nesting limit)', Buffer.from('['.repeat(1 << 20))],
  ['an alias bomb, 9^9 values', Buffer.from(['version: 1', 'a0: &a0 [x, x, x, x, x, x, x, x, x]', ...Array.from({length: 8}, (_, i) => `a${i + 1}: &a${i + 1} [${Array.from({length: 9}, () => `*a${i}`).join(', ')}]`)].join('\n'))],
  ['10 MB (over the size limit, refused from its length)', Buffer.concat([Buffer.from('version: 1\n#'), Buffer.alloc(10_000_000, 'x')])],
]

function compileAlone(text: string): void {
  const bytes = Buffer.from(text)
  for (let i = 0; i < 200; i++) compilePolicyBytes('cleanroom.yaml', bytes)
  const samples: number[] = []
  for (let i = 0; i < 1000; i++) {
    const start = performance.now()
    compilePolicyBytes('cleanroom.yaml', bytes)
    samples.push(performance.now() - start)
  }
  const {median, p95} = stats(samples)
  console.log(`## compiling the 20-rule policy in process\n  median ${median.toFixed(3)} ms  p95 ${p95.toFixed(3)} ms`)
}

function hardCases(): void {
  console.log('## the slowest files within the limits, and files over them (5 runs each, medians)')
  for (const [name, bytes] of HARD_CASES) {
    const wall: number[] = []
    const cpu: number[] = []
    let outcome = ''
    for (let i = 0; i < 5; i++) {
      const start = performance.now()
      const used = process.cpuUsage()
      try {
        compilePolicyBytes('cleanroom.yaml', bytes)
        outcome = 'valid'
      } catch (error) {
        outcome = (error as Error).message.split('\n')[1]?.replace(/^cleanroom\.yaml:/, '').slice(0, 70) ?? ''
      }
      const spent = process.cpuUsage(used)
      cpu.push((spent.user + spent.system) / 1000)
      wall.push(performance.now() - start)
    }
    console.log(`  ${name.padEnd(58)} wall ${stats(wall).median.toFixed(1).padStart(7)} ms  cpu ${stats(cpu).median.toFixed(1).padStart(7)} ms  ${outcome}`)
  }
}

/** The built daemon's policy step, timed per request: latency, and the event loop's busy time (its other requests wait that long). */
async function policyStep(repo: string): Promise<void> {
  const requests = (await import(join(BUILD, 'dist/daemon/requests.js'))) as {
    parseSandboxSource: (body: Record<string, unknown>) => Promise<unknown>
    startPolicyWorker?: () => void
  }
  requests.startPolicyWorker?.()
  const latency: number[] = []
  let busy = performance.eventLoopUtilization()
  for (let i = 0; i < 700; i++) {
    if (i === 200) busy = performance.eventLoopUtilization()
    const start = performance.now()
    await requests.parseSandboxSource({repository: repo})
    if (i >= 200) latency.push(performance.now() - start)
  }
  const {active} = performance.eventLoopUtilization(busy)
  const {median, p95} = stats(latency)
  console.log(`## the daemon's policy step for a 20-rule cleanroom.yaml (${BUILD}, 500 runs)`)
  console.log(`  latency median ${median.toFixed(3)} ms  p95 ${p95.toFixed(3)} ms  event loop busy ${(active / 500).toFixed(3)} ms per create`)
}

async function hotPath(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-policy-'))
  const env = benchEnv(home)
  const repo = join(home, 'repo')
  await mkdir(repo, {recursive: true})
  execFileSync('git', ['init', '-q', repo])
  await writeFile(join(repo, 'cleanroom.yaml'), twentyRulePolicy())
  await policyStep(repo)
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: 'ignore'})
  const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
  const created: string[] = []
  try {
    for (let i = 0; !(await client.ping().then(() => true, () => false)); i++) {
      if (i === 400) throw new Error('the daemon did not start')
      await sleep(25)
    }
    const comparison = await compare(
      `daemon side: create a sandbox, with and without a policy to find and compile (${RUN})`,
      [
        {name: 'POST {policy: default, workspace_source}', run: async () => void created.push((await client.createSandbox({policy: DEFAULT_POLICY, workspace_source: repo})).sandbox_id)},
        {name: 'POST {repository} with a 20-rule cleanroom.yaml', run: async () => void created.push((await client.createSandbox({repository: repo})).sandbox_id)},
      ],
      {runs: RUNS, warmup: 5},
    )
    console.log(renderComparison(comparison))
    const [withoutPolicy, withPolicy] = comparison.results
    console.log(`  finding and compiling the policy: ${(withPolicy!.stats.median - withoutPolicy!.stats.median).toFixed(2)} ms (difference of medians)`)
  } finally {
    for (const id of created) await client.removeSandbox(id).catch(() => undefined)
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await rm(home, {recursive: true, force: true})
  }
}

compileAlone(twentyRulePolicy())
hardCases()
await hotPath()
