/**
 * Agent starts, against `gemini --version` on the host plus the sandbox TTI
 * (`cleanroom exec -- true`); goal <= 1.3x for both:
 * - in a new sandbox, the package in the shared agent cache (`cleanroom agent gemini --version`);
 * - in a kept sandbox (`cleanroom agent --sandbox-id ID gemini --version`).
 * Also the disk a new agent sandbox takes beyond what the agent writes (goal < 5 MiB),
 * and, for scale, what a sandbox that runs Gemini through npm in itself keeps.
 * Part of `npm run bench`; alone: `node --import tsx bench/agent.ts` (BENCH_RUNS, default 10).
 */
import {execFile} from 'node:child_process'
import {mkdir, mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'
import {promisify} from 'node:util'

import {DaemonClient} from '../src/client/client.js'
import {benchEnv, command, compare, type Comparison, renderComparison} from './harness.js'

const run = promisify(execFile)
const RUN = new URL('../bin/run.js', import.meta.url).pathname
const GEMINI_PACKAGE = '@google/gemini-cli@latest'

export interface AgentBenchContext {
  /** The CLI's environment: a private HOME and XDG dirs. */
  env: NodeJS.ProcessEnv
  /** A git repository the sandboxes are made from. */
  repo: string
  runs: number
}

export interface AgentBench {
  newSandbox: Comparison
  keptSandbox: Comparison
  /** KiB on disk of one new agent sandbox's state dir, split by what wrote it. */
  disk: Record<string, number>
}

export async function agentComparisons({env, repo, runs}: AgentBenchContext): Promise<AgentBench> {
  const prefix = await mkdtemp(join(tmpdir(), 'cleanroom-bench-gemini-'))
  const made: string[] = []
  const cli = (args: string[]) => run(process.execPath, [RUN, ...args], {env, cwd: repo})
  const agentStart = async (args: string[]) => {
    const {stderr} = await cli(['agent', ...args, 'gemini', '--version'])
    const id = /sandbox_id=(cr_\w+)/.exec(stderr)?.[1]
    if (id === undefined) throw new Error(`cleanroom agent gemini printed no sandbox id:\n${stderr}`)
    return id
  }
  try {
    // The host baseline: the same release the cache holds, installed outside any sandbox.
    await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', GEMINI_PACKAGE], {env})
    const hostGemini = command([join(prefix, 'node_modules/.bin/gemini'), '--version'], env)
    const tti = command([process.execPath, RUN, 'exec', '-c', repo, '--', 'true'], env)
    const baseline = {
      name: 'host gemini --version + cleanroom exec -- true',
      async run() {
        await hostGemini()
        await tti()
      },
    }

    // The first start fills the shared cache through a fetch sandbox; every start below finds it there.
    const first = await agentStart([])
    made.push(first)
    const hostVersion = (await run(join(prefix, 'node_modules/.bin/gemini'), ['--version'], {env})).stdout.trim()
    const inSandbox = (await cli(['agent', '--sandbox-id', first, 'gemini', '--version'])).stdout.trim()
    console.log(`gemini ${inSandbox} from the shared agent cache, ${hostVersion} on the host`)
    const disk = await sandboxDisk(env, first, repo)

    const newVariant = 'cleanroom agent gemini --version (new sandbox)'
    const newSandbox = await compare(
      'agent start in a new sandbox, package in the shared agent cache: gemini --version',
      [
        baseline,
        {
          name: newVariant,
          async run() {
            made.push(await agentStart([]))
          },
        },
        {name: 'host gemini --version', run: hostGemini},
        {name: 'cleanroom exec -- true', run: tti},
      ],
      {runs, goal: {variant: newVariant, maxRatio: 1.3}},
    )
    const keptVariant = 'cleanroom agent --sandbox-id ID gemini --version'
    const keptSandbox = await compare(
      'agent start in a kept sandbox: gemini --version',
      [baseline, {name: keptVariant, run: command([process.execPath, RUN, 'agent', '--sandbox-id', first, 'gemini', '--version'], env)}],
      {runs, goal: {variant: keptVariant, maxRatio: 1.3}},
    )
    return {newSandbox, keptSandbox, disk}
  } finally {
    for (const id of made) await cli(['sandbox', 'rm', id]).catch(() => undefined)
    await rm(prefix, {recursive: true, force: true})
  }
}

/**
 * `du` of a new agent sandbox's state dir after `gemini --version`: what the agent
 * wrote (its home, /tmp, /workspace's upper layer) and the rest, which is cleanroom's
 * own (generated /etc, records, logs). For scale, a sandbox made without the agent
 * (no cache mounted) runs Gemini through npm in itself: its home then holds npm's cache.
 */
async function sandboxDisk(env: NodeJS.ProcessEnv, id: string, repo: string): Promise<Record<string, number>> {
  const state = join(String(env.XDG_STATE_HOME), 'cleanroom/sandboxes')
  const du = async (path: string) => Number((await run('du', ['-sk', path])).stdout.split('\t')[0])
  const total = await du(join(state, id))
  const written = {home: await du(join(state, id, 'home')), tmp: await du(join(state, id, 'tmp')), upper: await du(join(state, id, 'upper'))}
  const agentWrites = written.home + written.tmp + written.upper

  const client = new DaemonClient(join(String(env.XDG_RUNTIME_DIR), 'cleanroom/cleanroom.sock'))
  const plain = (await client.createSandbox({repository: repo, extra_allow: [{host: 'registry.npmjs.org', ports: [443]}]})).sandbox_id
  try {
    await run(process.execPath, [RUN, 'agent', '--sandbox-id', plain, 'gemini', '--version'], {env})
    const npmHome = await du(join(state, plain, 'home'))
    return {total_kib: total, agent_writes_kib: agentWrites, beyond_agent_writes_kib: total - agentWrites, npm_in_sandbox_home_kib: npmHome}
  } finally {
    await client.removeSandbox(plain).catch(() => undefined)
  }
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-agent-'))
  const env = benchEnv(home)
  const repo = join(home, 'repo')
  await mkdir(repo, {recursive: true})
  await run('git', ['init', '-q', repo])
  try {
    const bench = await agentComparisons({env, repo, runs: Number(process.env.BENCH_RUNS ?? 10)})
    console.log(renderComparison(bench.newSandbox))
    console.log(renderComparison(bench.keptSandbox))
    console.log(renderDisk(bench.disk))
  } finally {
    // The CLI started the daemon on first use: stop it, with its sandboxes.
    const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
    const pid = await client.ping().then((answer) => answer.pid, () => undefined)
    if (pid !== undefined) {
      for (const sandbox of await client.listSandboxes(false).catch(() => [])) await client.removeSandbox(sandbox.sandbox_id).catch(() => undefined)
      process.kill(pid, 'SIGTERM')
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
    await rm(home, {recursive: true, force: true})
  }
}

/** The disk measurement as the run prints it. */
export function renderDisk(disk: Record<string, number>): string {
  const beyond = (disk.beyond_agent_writes_kib ?? Number.NaN) / 1024
  return [
    '## disk of a new agent sandbox after gemini --version (KiB)',
    ...Object.entries(disk).map(([key, value]) => `  ${key.padEnd(28)} ${value}`),
    `  goal: < 5 MiB beyond what the agent writes (measured ${beyond.toFixed(2)} MiB): ${beyond < 5 ? 'MET' : 'MISSED'}`,
  ].join('\n')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
