/**
 * An agent's start, cached in its sandbox: `cleanroom agent --sandbox-id ID gemini
 * -- --version` against `gemini --version` on the host plus the sandbox TTI
 * (`cleanroom exec -- true`). Goal: <= 1.3x. Part of `npm run bench`; alone:
 * `node --import tsx bench/agent.ts` (BENCH_RUNS, default 10).
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

export async function agentComparison({env, repo, runs}: AgentBenchContext): Promise<Comparison> {
  const prefix = await mkdtemp(join(tmpdir(), 'cleanroom-bench-gemini-'))
  let sandboxId: string | undefined
  try {
    // The host baseline: the same release npm would fetch in the sandbox, installed outside it.
    await run('npm', ['install', '--prefix', prefix, '--no-audit', '--no-fund', '--loglevel=error', GEMINI_PACKAGE], {env})
    const hostGemini = command([join(prefix, 'node_modules/.bin/gemini'), '--version'], env)
    const tti = command([process.execPath, RUN, 'exec', '-c', repo, '--', 'true'], env)

    // The first start fetches the agent through the proxy into the sandbox's npm cache; the runs below reuse it.
    const first = await run(process.execPath, [RUN, 'agent', 'gemini', '--', '--version'], {env, cwd: repo})
    sandboxId = /sandbox_id=(cr_\w+)/.exec(first.stderr)?.[1]
    if (sandboxId === undefined) throw new Error(`cleanroom agent gemini printed no sandbox id:\n${first.stderr}`)
    const hostVersion = (await run(join(prefix, 'node_modules/.bin/gemini'), ['--version'], {env})).stdout.trim()
    console.log(`gemini ${first.stdout.trim()} in the sandbox, ${hostVersion} on the host`)

    const agentVariant = 'cleanroom agent --sandbox-id ID gemini -- --version'
    return await compare(
      'agent start, cached in its sandbox: gemini --version',
      [
        {
          name: 'host gemini --version + cleanroom exec -- true',
          async run() {
            await hostGemini()
            await tti()
          },
        },
        {name: agentVariant, run: command([process.execPath, RUN, 'agent', '--sandbox-id', sandboxId, 'gemini', '--', '--version'], env)},
        {name: 'host gemini --version', run: hostGemini},
        {name: 'cleanroom exec -- true', run: tti},
      ],
      {runs, goal: {variant: agentVariant, maxRatio: 1.3}},
    )
  } finally {
    if (sandboxId !== undefined) await run(process.execPath, [RUN, 'sandbox', 'rm', sandboxId], {env}).catch(() => undefined)
    await rm(prefix, {recursive: true, force: true})
  }
}

async function main(): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-agent-'))
  const env = benchEnv(home)
  const repo = join(home, 'repo')
  await mkdir(repo, {recursive: true})
  await run('git', ['init', '-q', repo])
  try {
    console.log(renderComparison(await agentComparison({env, repo, runs: Number(process.env.BENCH_RUNS ?? 10)})))
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

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
