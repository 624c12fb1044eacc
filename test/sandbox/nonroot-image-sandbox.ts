/**
 * Run by image-userns.test.ts as a non-root uid (setpriv), so the backend takes the path
 * of a non-root daemon: creates a sandbox on the root filesystem ROOTFS (as an image
 * whose User is root), runs a few commands, terminates it, prints what it saw as JSON.
 *   node --import tsx test/sandbox/nonroot-image-sandbox.ts WORKSPACE SANDBOXES_DIR ROOTFS
 */
import {LinuxNsBackend} from '../../src/sandbox/backends/linux-ns/index.js'
import {newStateDir, POLICY, sh} from './helpers.js'

const [workspace, sandboxesDir, rootfs] = process.argv.slice(2)
if (!workspace || !sandboxesDir || !rootfs) throw new Error('usage: nonroot-image-sandbox.ts WORKSPACE SANDBOXES_DIR ROOTFS')

const ref = `local/test@sha256:${'a'.repeat(64)}`
const backend = new LinuxNsBackend({bwrap_path: 'bwrap'})
const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
const policy = {...POLICY, image_ref: ref, image_digest: `sha256:${'a'.repeat(64)}`}
const runtime = await backend.provision({sandboxId, policy, workspaceSource: workspace, stateDir, image: {ref, id: `sha256:${'b'.repeat(64)}`, rootfs, config: {User: '0', Env: ['FROM_IMAGE=yes']}}})
try {
  const facts = {
    runtime,
    seen: await sh(backend, runtime, 'cat /etc/os-release; id -u; echo $FROM_IMAGE; cat /workspace/a.txt; echo x > /bin/new && cat /bin/new; grep -E "^(CapEff|NoNewPrivs)" /proc/self/status'),
  }
  await backend.terminate(runtime)
  process.stdout.write(JSON.stringify({...facts, aliveAfter: await backend.isAlive(runtime)}))
} catch (error) {
  await backend.terminate(runtime)
  throw error
}
