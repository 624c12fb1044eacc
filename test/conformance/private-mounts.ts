/**
 * Run by boundary.test.ts inside a private mount namespace the test made (unshare
 * --mount --propagation private), where it stands in for a host whose files change:
 * nothing it mounts or renames there is seen by the rest of the machine. Prints
 * what it saw as JSON on stdout.
 *
 *   etc ETC_COPY SANDBOXES_DIR   /etc is ETC_COPY here: creates a sandbox, renames new
 *                                passwd, group, hosts, hostname and resolv.conf over the
 *                                copy's, and reads the sandbox's /etc before and after.
 *   ignored PASSWD REPO          /etc/passwd is PASSWD here: lists what git ignores in
 *                                REPO (owned by a user PASSWD names) as a root daemon does.
 */
import {rename, writeFile} from 'node:fs/promises'
import {execFileSync} from 'node:child_process'
import {join} from 'node:path'

import {LinuxNsBackend} from '../../src/sandbox/backends/linux-ns/index.js'
import {listIgnored} from '../../src/sandbox/ignored.js'
import {newStateDir, POLICY, sh} from '../sandbox/helpers.js'

const [mode, ...args] = process.argv.slice(2)

/** Binds `source` over `target` in this process's mount namespace (private: the test made it). */
function bind(source: string, target: string): void {
  execFileSync('mount', ['--bind', source, target])
}

const GENERATED = ['passwd', 'group', 'hosts', 'hostname', 'resolv.conf']

if (mode === 'etc') {
  const [etcCopy, sandboxesDir] = args
  if (!etcCopy || !sandboxesDir) throw new Error('usage: private-mounts.ts etc ETC_COPY SANDBOXES_DIR')
  bind(etcCopy, '/etc')
  const backend = new LinuxNsBackend({bwrap_path: 'bwrap'})
  const {sandboxId, stateDir} = await newStateDir(sandboxesDir)
  const runtime = await backend.provision({sandboxId, policy: POLICY, workspaceSource: null, stateDir})
  try {
    const read = () => sh(backend, runtime, `for f in ${GENERATED.join(' ')}; do echo "== $f"; cat /etc/$f; done; id -un || true`)
    const before = await read()
    // What useradd or a resolver manager does: write a new file, rename it over the old one.
    for (const name of GENERATED) {
      await writeFile(join(etcCopy, `${name}.new`), `${name} written on the host after the sandbox was made\n`)
      await rename(join(etcCopy, `${name}.new`), join(etcCopy, name))
    }
    const after = await read()
    process.stdout.write(JSON.stringify({before, after}))
  } finally {
    await backend.terminate(runtime)
    // The uid it reserved for a next create goes back.
    await backend.release()
  }
} else if (mode === 'ignored') {
  const [passwd, repo] = args
  if (!passwd || !repo) throw new Error('usage: private-mounts.ts ignored PASSWD REPO')
  bind(passwd, '/etc/passwd')
  process.stdout.write(JSON.stringify(await listIgnored(repo, {PATH: process.env.PATH})))
} else {
  throw new Error(`unknown mode ${mode}`)
}
