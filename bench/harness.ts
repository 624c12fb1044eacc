import {execFileSync, spawn} from 'node:child_process'

import {hostProcesses, runsBelow} from './proc-tree.js'

export interface Stats {
  runs: number
  median: number
  p95: number
  min: number
}

export interface Variant {
  name: string
  run: () => Promise<void>
  /** Runs before each timed run, untimed (e.g. emptying a cache). */
  prepare?: () => Promise<void>
}

export interface Comparison {
  title: string
  /** The first variant is the baseline the others are compared to. */
  results: {name: string; stats: Stats; ratio: number}[]
  goal?: {variant: string; maxRatio: number; met: boolean}
}

export function stats(samples: readonly number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b)
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!
  return {runs: sorted.length, median: at(0.5), p95: at(0.95), min: sorted[0]!}
}

/**
 * Runs the variants alternately (A B C A B C …) so drift on a shared machine
 * hits them equally, after `warmup` rounds that are not recorded.
 */
export async function compare(title: string, variants: Variant[], options: {runs?: number; warmup?: number; goal?: {variant: string; maxRatio: number}} = {}): Promise<Comparison> {
  const runs = options.runs ?? 30
  const warmup = options.warmup ?? 3
  const samples = variants.map(() => [] as number[])
  for (let round = 0; round < warmup + runs; round++) {
    for (const [i, variant] of variants.entries()) {
      await variant.prepare?.()
      const start = process.hrtime.bigint()
      await variant.run()
      const elapsed = Number(process.hrtime.bigint() - start) / 1e6
      if (round >= warmup) samples[i]!.push(elapsed)
    }
  }
  const computed = variants.map((variant, i) => ({name: variant.name, stats: stats(samples[i]!)}))
  const base = computed[0]!.stats.median
  const results = computed.map((result) => ({...result, ratio: result.stats.median / base}))
  const comparison: Comparison = {title, results}
  if (options.goal) {
    const measured = results.find((result) => result.name === options.goal!.variant)
    comparison.goal = {...options.goal, met: measured !== undefined && measured.ratio <= options.goal.maxRatio}
  }
  return comparison
}

/** Runs a command to completion; rejects on a non-zero exit. Output is discarded. */
export function command(argv: readonly string[], env?: NodeJS.ProcessEnv): () => Promise<void> {
  return () =>
    new Promise((resolve, reject) => {
      const child = spawn(argv[0]!, argv.slice(1), {stdio: 'ignore', env: env ?? process.env})
      child.on('error', reject)
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${argv.join(' ')} exited ${code}`))))
    })
}

export function renderComparison(comparison: Comparison): string {
  const lines = [`## ${comparison.title}`]
  const width = Math.max(...comparison.results.map((result) => result.name.length))
  for (const [i, result] of comparison.results.entries()) {
    const {median, p95, min} = result.stats
    const ratio = i === 0 ? 'baseline' : `${result.ratio.toFixed(2)}x`
    lines.push(`  ${result.name.padEnd(width)}  median ${ms(median)}  p95 ${ms(p95)}  min ${ms(min)}  ${ratio}`)
  }
  if (comparison.goal) {
    const {variant, maxRatio, met} = comparison.goal
    lines.push(`  goal: ${variant} <= ${maxRatio}x baseline: ${met ? 'MET' : 'MISSED'}`)
  }
  return lines.join('\n')
}

function ms(value: number): string {
  return `${value.toFixed(2).padStart(8)} ms`
}

/** A private home for a benchmark run: every per-user location cleanroom uses points under it. */
export function benchEnv(home: string): NodeJS.ProcessEnv {
  return {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: `${home}/.config`,
    XDG_STATE_HOME: `${home}/.local/state`,
    XDG_RUNTIME_DIR: `${home}/run`,
    CLEANROOM_DATA_DIR: `${home}/.local/share/cleanroom`,
  }
}

/** Whether `tool` is on PATH (peers the benchmark compares with where this machine has them). */
export function installed(tool: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${tool}`], {stdio: 'ignore'})
    return true
  } catch {
    return false
  }
}

/** RSS (KiB) of the daemon process and of all its descendants together. */
export async function memoryOf(daemonPid: number): Promise<{daemon: number; children: number}> {
  const processes = await hostProcesses()
  let children = 0
  for (const [pid, host] of processes) if (pid !== daemonPid && runsBelow(processes, pid, (_name, ancestor) => ancestor === daemonPid)) children += host.rssKib
  return {daemon: processes.get(daemonPid)?.rssKib ?? 0, children}
}
