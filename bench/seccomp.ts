/**
 * What the sandbox's seccomp filter costs: installing it (once per exec, in
 * nsinit; once per create, in bwrap) and one system call under it, measured in
 * a C program (bench/seccomp-install.c); and a program that makes many system
 * calls (`dd bs=1` on /dev/zero makes two per byte), timed with and without it.
 */
import {execFileSync} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {findNsinit} from '../src/sandbox/backends/linux-ns/nsinit-binary.js'
import {command, compare, type Comparison} from './harness.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const BYTES = 200_000

/** What bench/seccomp-install.c measured: the install, and one getppid() without and under the filter. */
export interface FilterCost {
  runs: number
  median_us: number
  p95_us: number
  instructions: number
  plain_ns: number
  filtered_ns: number
}

export async function seccompComparisons(runs: number): Promise<{cost: FilterCost; syscalls: Comparison}> {
  const dir = await mkdtemp(join(tmpdir(), 'cleanroom-bench-seccomp-'))
  try {
    const probe = join(dir, 'seccomp-install')
    const helper = join(ROOT, 'src/sandbox/backends/linux-ns')
    execFileSync('cc', ['-O2', '-I', helper, '-o', probe, join(ROOT, 'bench/seccomp-install.c'), join(helper, 'seccomp.c')])
    const cost = JSON.parse(execFileSync(probe).toString()) as FilterCost

    const nsinit = await findNsinit()
    if (!nsinit.ok) throw new Error(`${nsinit.problem} (fix: ${nsinit.fix})`)
    const dd = ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1', `count=${BYTES}`, 'status=none']
    const syscalls = await compare(
      `seccomp: ${2 * BYTES} system calls (dd bs=1), without and under the filter`,
      [
        {name: 'dd', run: command(dd)},
        {name: 'nsinit seccomp -- dd', run: command([nsinit.binary.path, 'seccomp', '--', ...dd])},
      ],
      {runs},
    )
    return {cost, syscalls}
  } finally {
    await rm(dir, {recursive: true, force: true})
  }
}
