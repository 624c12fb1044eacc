import {expect} from 'chai'
import {access} from 'node:fs/promises'

import type {BackendName} from '../../src/config/schema.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {runInSandbox} from '../../src/client/exec.js'
import {eventually} from '../helpers/daemon-process.js'
import {leftoverSandboxes, startTestDaemon, testDaemonSuite} from '../helpers/daemon.js'
import {captureTerminal} from '../helpers/terminal.js'
import {BACKENDS, requireBackend} from './backends.js'

/** The host process whose death is the sandbox's: linux-ns's init, gVisor's kernel. */
const KERNEL_OR_INIT: Record<BackendName, string> = {'linux-ns': 'init_pid', gvisor: 'sandbox_pid'}

/** What the daemon does with a backend's sandboxes across its own restarts, and what their removal leaves. */
for (const backend of BACKENDS) {
  describe(`daemon conformance (${backend})`, function () {
    this.timeout(120_000)
    before(() => requireBackend(backend))
    const suite = testDaemonSuite('cleanroom-daemon-conformance-', {each: true})

    it('adopts live sandboxes after a restart (files, exec, egress) and marks dead ones failed; removal leaves nothing', async () => {
      const live = await suite.test.client.createSandbox({backend, policy: DEFAULT_POLICY, workspace_source: null, allow_all: false})
      const doomed = await suite.test.client.createSandbox({backend, policy: DEFAULT_POLICY, workspace_source: null, allow_all: false})
      await suite.test.client.run(live.sandbox_id, {argv: ['sh', '-c', 'echo before > /tmp/mark'], env: {}})
      const runtimes = [live, doomed].map((sandbox) => suite.test.daemon.manager.get(sandbox.sandbox_id).runtime as Record<string, unknown>)
      const doomedPid = runtimes[1]![KERNEL_OR_INIT[backend]] as number

      await suite.test.daemon.close()
      process.kill(doomedPid, 'SIGKILL')
      suite.test = await startTestDaemon(suite.dir)

      expect((await suite.test.client.inspectSandbox(live.sandbox_id)).status).to.equal('ready')
      expect((await suite.test.client.run(live.sandbox_id, {argv: ['cat', '/tmp/mark'], env: {}})).stdout).to.equal('before\n')
      // The proxy of the new daemon answers: a host the policy does not allow is refused with 403.
      const proxied = await suite.test.client.run(live.sandbox_id, {argv: ['curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', 'http://example.org/'], env: {}})
      expect(proxied.stdout).to.equal('403')
      await eventually('the dead sandbox to be failed', async () => (await suite.test.client.inspectSandbox(doomed.sandbox_id)).status === 'failed', 5000)
      const error = await suite.test.client.run(doomed.sandbox_id, {argv: ['true'], env: {}}).catch((error_: unknown) => error_)
      expect((error as CleanroomError).code).to.equal('sandbox_failed')

      await suite.test.client.removeSandbox(live.sandbox_id)
      await suite.test.client.removeSandbox(doomed.sandbox_id)
      expect(await leftoverSandboxes(suite.sandboxesBefore, suite.dir), 'sandbox processes after removal').to.deep.equal([])
      const runDirs = runtimes.flatMap((runtime) => (typeof runtime.run_dir === 'string' ? [runtime.run_dir] : []))
      const kept = await Promise.all(runDirs.map((path) => access(path).then(() => path, () => undefined)))
      expect(kept.filter(Boolean), 'run dirs after removal').to.deep.equal([])
    })

    it('runs a console (a command on a terminal through the exec stream): input in, output and exit code out', async () => {
      const sandbox = await suite.test.client.createSandbox({backend, policy: DEFAULT_POLICY, workspace_source: null, allow_all: false})
      const terminal = captureTerminal(Buffer.from('typed\n'))
      const script = 'test -t 0 && test -t 1 && echo on-a-terminal; read line; echo "got $line"; stty size; exit 5'
      const outcome = await runInSandbox(suite.test.client, sandbox.sandbox_id, {argv: ['sh', '-c', script], env: {TERM: 'xterm'}, tty: true, cols: 100, rows: 30}, terminal)
      expect(outcome.exitCode).to.equal(5)
      const output = terminal.output().toString()
      expect(output).to.include('on-a-terminal').and.include('got typed').and.include('30 100')
    })

    it('refuses a policy needing a capability the backend lacks, at create, naming it', async () => {
      // No backend runs a Docker daemon (linux-ns runs images now; lifecycle.test.ts checks the image refusal per backend).
      const policy = {...DEFAULT_POLICY, services: {docker: {required: true}}}
      const error = await suite.test.client.createSandbox({backend, policy, workspace_source: null, allow_all: false}).catch((error_: unknown) => error_)
      expect(error).to.be.instanceOf(CleanroomError).and.include({code: 'backend_capability_mismatch'})
      expect((error as Error).message).to.include('services.docker')
      expect(await suite.test.client.listSandboxes(true)).to.deep.equal([])
    })
  })
}
