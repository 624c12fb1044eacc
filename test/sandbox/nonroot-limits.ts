/**
 * Run by limits.test.ts as a non-root uid (setpriv): a daemon that cannot manage
 * cgroups. Creates two sandboxes with the default limits and tries one whose policy
 * asks for memory, then prints what it saw as JSON on stdout.
 *   node --import tsx test/sandbox/nonroot-limits.ts WORK_DIR
 */
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import type {BackendRuntime} from '../../src/sandbox/backend.js'
import {LinuxNsBackend} from '../../src/sandbox/backends/linux-ns/index.js'
import {makeRemovable} from '../../src/sandbox/backends/linux-ns/terminate.js'
import {newStateDir, POLICY} from './helpers.js'

const [work] = process.argv.slice(2)
if (!work) throw new Error('usage: nonroot-limits.ts WORK_DIR')

const backend = new LinuxNsBackend({bwrap_path: 'bwrap'})
const sandboxes = join(work, 'sandboxes')
await mkdir(sandboxes)
const warnings: string[] = []
const made: BackendRuntime[] = []
try {
  for (let i = 0; i < 2; i++) {
    const {sandboxId, stateDir} = await newStateDir(sandboxes)
    made.push(await backend.provision({sandboxId, policy: POLICY, workspaceSource: null, stateDir, log: (line) => warnings.push(line)}))
  }
  const {sandboxId, stateDir} = await newStateDir(sandboxes)
  const refusal = await backend
    .provision({sandboxId, policy: POLICY, workspaceSource: null, stateDir, resources: {memory_bytes: 1024 ** 3}, log: (line) => warnings.push(line)})
    .then(
      () => ({code: 'none', message: 'the sandbox was created'}),
      (error: unknown) => (error instanceof CleanroomError ? {code: error.code, message: error.message} : {code: 'other', message: String(error)}),
    )
  const resources = made.map((runtime) => backend.resourcesOf(runtime))
  process.stdout.write(JSON.stringify({capabilities: backend.capabilities(), warnings, refusal, resources}))
} finally {
  for (const runtime of made) {
    await backend.terminate(runtime)
    await makeRemovable(String(runtime.state_dir))
  }
}
