/**
 * Run by linux-ns.test.ts as a non-root uid (setpriv), so the backend takes the path of
 * a non-root daemon: creates a sandbox of `workspace` in `sandboxesDir`, runs a few
 * commands, terminates it, and prints what it saw as JSON on stdout.
 *   node --import tsx test/sandbox/nonroot-sandbox.ts WORKSPACE SANDBOXES_DIR
 */
import {LinuxNsBackend} from '../../src/sandbox/backends/linux-ns/index.js'
import {newStateDir, POLICY, run, sh} from './helpers.js'

const [workspace, sandboxesDir] = process.argv.slice(2)
if (!workspace || !sandboxesDir) throw new Error('usage: nonroot-sandbox.ts WORKSPACE SANDBOXES_DIR')

const backend = new LinuxNsBackend({bwrap_path: 'bwrap'})
const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
const runtime = await backend.provision({sandboxId, policy: POLICY, workspaceSource: workspace, stateDir})
try {
  await sh(backend, runtime, 'echo kept > /workspace/new.txt && echo home > $HOME/h && echo tmp > /tmp/t')
  const facts = {
    daemonUid: process.getuid?.(),
    runtime,
    id: await sh(backend, runtime, 'echo $(id -u) $(id -g)'),
    persisted: await sh(backend, runtime, 'cat /workspace/new.txt $HOME/h /tmp/t'),
    status: await sh(backend, runtime, 'grep -E "^(CapEff|CapBnd|NoNewPrivs)" /proc/self/status'),
    links: await sh(backend, runtime, 'ip -br link'),
    modifyAndDelete: (await run(backend, runtime, ['sh', '-c', 'echo more >> a.txt && rm sub/b.txt && rmdir sub && cat a.txt'])).stdout.toString(),
    ignoredVisible: (await run(backend, runtime, ['test', '-e', '.env'])).exitCode === 0,
    aliveBefore: await backend.isAlive(runtime),
  }
  await backend.terminate(runtime)
  process.stdout.write(JSON.stringify({...facts, aliveAfter: await backend.isAlive(runtime)}))
} catch (error) {
  await backend.terminate(runtime)
  throw error
}
