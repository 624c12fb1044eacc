/**
 * The backends side by side (bench/README.md): for each one the daemon can run here,
 * a create (API call until ready), `cleanroom exec --sandbox-id ID -- true` into an
 * existing sandbox, the same exec as an API call, and the RSS of each idle sandbox's
 * host processes. A backend this machine cannot run is named and left out.
 */
import {setTimeout as sleep} from 'node:timers/promises'

import type {DaemonClient} from '../src/client/client.js'
import {BACKENDS, type BackendName, DEFAULT_RUNTIME_CONFIG} from '../src/config/schema.js'
import {createBackends} from '../src/sandbox/backends/index.js'
import {compare, type Comparison} from './harness.js'
import {hostProcesses, runsBelow} from './proc-tree.js'

/** Idle sandboxes per backend for the memory figure. */
const IDLE_SANDBOXES = 10

export interface BackendBench {
  create: Comparison
  exec: Comparison
  execApi: Comparison
  /** KiB of RSS per idle sandbox, by backend. */
  rssPerSandboxKib: Record<string, number>
  /** Backends this machine cannot run, with the reason. */
  unavailable: Record<string, string>
}

export async function backendComparisons(options: {client: DaemonClient; repo: string; runs: number; cli: (...args: string[]) => () => Promise<void>}): Promise<BackendBench> {
  const {client, repo, runs, cli} = options
  const backends = createBackends(DEFAULT_RUNTIME_CONFIG)
  const usable: BackendName[] = []
  const unavailable: Record<string, string> = {}
  for (const name of BACKENDS) {
    const availability = await backends.get(name)!.availability()
    if (availability.ok) usable.push(name)
    else unavailable[name] = availability.problem ?? 'unavailable'
  }

  const created: string[] = []
  const kept = new Map<BackendName, string>()
  const rssPerSandboxKib: Record<string, number> = {}
  try {
    const create = await compare(
      'backends: create a sandbox (API call until ready)',
      usable.map((backend) => ({name: `POST /v1/sandboxes, ${backend}`, run: async () => void created.push((await client.createSandbox({repository: repo, backend})).sandbox_id)})),
      {runs},
    )
    for (const id of created.splice(0)) await client.removeSandbox(id)

    for (const backend of usable) kept.set(backend, (await client.createSandbox({repository: repo, backend})).sandbox_id)
    const exec = await compare(
      'backends: cleanroom exec --sandbox-id ID -- true into an existing sandbox',
      usable.map((backend) => ({name: `exec -- true, ${backend}`, run: cli('exec', '--sandbox-id', kept.get(backend)!, '--', 'true')})),
      {runs},
    )
    const execApi = await compare(
      'backends: exec `true` in an existing sandbox (API call until exit)',
      usable.map((backend) => ({name: `POST /v1/sandboxes/ID/run, ${backend}`, run: async () => void (await client.run(kept.get(backend)!, {argv: ['true'], env: {}}))})),
      {runs},
    )

    for (const backend of usable) {
      const before = await sandboxRss(backend)
      const idle: string[] = []
      for (let i = 0; i < IDLE_SANDBOXES; i++) idle.push((await client.createSandbox({repository: repo, backend})).sandbox_id)
      await sleep(500)
      rssPerSandboxKib[backend] = ((await sandboxRss(backend)) - before) / IDLE_SANDBOXES
      for (const id of idle) await client.removeSandbox(id)
    }
    return {create, exec, execApi, rssPerSandboxKib, unavailable}
  } finally {
    for (const id of [...created, ...kept.values()]) await client.removeSandbox(id).catch(() => undefined)
  }
}

/**
 * KiB of RSS of every host process a backend's sandboxes run, machine-wide: bwrap and
 * what runs below it (linux-ns), runsc and its gVisor kernel, gofer and systrap stubs
 * (gvisor). Measured as a difference, so other sandboxes on the machine cancel out
 * as long as they stay put while it runs.
 */
async function sandboxRss(backend: BackendName): Promise<number> {
  const processes = await hostProcesses()
  // A detached gVisor sandbox outlives its `runsc run`: its kernel and gofer run under names of their own, the stubs below the kernel.
  const roots = backend === 'gvisor' ? new Set(['runsc', 'runsc-sandbox', 'runsc-gofer']) : new Set(['bwrap'])
  let total = 0
  for (const [pid, host] of processes) if (runsBelow(processes, pid, (name) => roots.has(name))) total += host.rssKib
  return total
}

