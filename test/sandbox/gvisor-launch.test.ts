import {expect} from 'chai'
import {chmod, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import {launchSandbox, type LaunchedSandbox} from '../../src/sandbox/backends/gvisor/launch.js'
import {isRunning} from '../../src/sandbox/backends/linux-ns/runtime.js'
import {tempDirs} from '../helpers/tmp.js'

/**
 * Stands in for `nsinit create … -- runsc run --detach`: reads the key line, starts a
 * "runsc-sandbox" that says LINE on the launch's stdout after DELAY seconds (or ends
 * without a word when LINE is empty) and a "runsc-gofer", records them where runsc
 * records a sandbox, and exits once both run under those names, as runsc run does.
 */
const FAKE_RUNSC = `#!/bin/bash
run=$1 line=$2 delay=$3
read -r key || exit 3
[ "$key" = the-key ] || exit 4
(exec -a runsc-sandbox bash -c 'sleep "$1"; if [ -n "$2" ]; then printf "%s\\n" "$2"; exec sleep 60; fi' _ "$delay" "$line") &
sandbox=$!
(exec -a runsc-gofer sleep 60 </dev/null >/dev/null) &
gofer=$!
for pid in $sandbox $gofer; do
  until tr '\\0' '\\n' < /proc/$pid/cmdline 2>/dev/null | head -1 | grep -q '^runsc-'; do sleep 0.01; done
done
mkdir -p "$run/runsc"
printf '{"goferPid":%d,"sandbox":{"pid":%d}}' $gofer $sandbox > "$run/runsc/sandbox_sandbox:sandbox.state"
`

describe("gvisor launch: create returns when runsc has started the sandbox, and its init's word comes after", () => {
  const dirs = tempDirs('cleanroom-gvisor-launch-')
  const started: LaunchedSandbox[] = []

  afterEach(async () => {
    for (const {sandbox, gofer} of started.splice(0)) {
      for (const pid of [sandbox.pid, gofer.pid]) {
        try {
          process.kill(pid, 'SIGKILL')
        } catch {
          // gone already
        }
      }
    }
    await dirs.cleanup()
  })

  async function launch(line: string, delaySeconds: number): Promise<{launched: LaunchedSandbox; log: string}> {
    const dir = await dirs.make()
    const fake = join(dir, 'fake-runsc')
    await writeFile(fake, FAKE_RUNSC)
    await chmod(fake, 0o755)
    const log = join(dir, 'sandbox.log')
    await writeFile(log, 'nsinit: what the helpers said\n')
    const launched = await launchSandbox(fake, [join(dir, 'run'), line, String(delaySeconds)], log, dir, join(dir, 'run'), {initInput: 'the-key\n'})
    started.push(launched)
    return {launched, log}
  }

  const settled = (promise: Promise<void>) => Promise.race([promise.then(() => 'resolved', () => 'rejected'), new Promise((resolve) => setTimeout(() => resolve('pending'), 50))])

  it('returns before init says "ready", and `ready` resolves when it does', async () => {
    const {launched} = await launch('ready', 1)
    expect(await settled(launched.ready)).to.equal('pending')
    await launched.ready
    expect(await isRunning(launched.sandbox.pid, launched.sandbox.startTime)).to.equal(true)
  })

  it('rejects `ready` with what the helpers logged, and ends the sandbox, when init says anything else', async () => {
    const {launched} = await launch('no such thing', 0.2)
    const error = await launched.ready.then(() => undefined, (caught: unknown) => caught)
    expect(error).to.be.instanceOf(CleanroomError)
    expect((error as CleanroomError).code).to.equal('backend_failed')
    expect((error as Error).message).to.include('unexpected first line from the sandbox: no such thing').and.include('nsinit: what the helpers said')
    expect(await isRunning(launched.sandbox.pid, launched.sandbox.startTime)).to.equal(false)
  })

  it('rejects `ready` when the sandbox ends without a word', async () => {
    const {launched, log} = await launch('', 0.2)
    const error = await launched.ready.then(() => undefined, (caught: unknown) => caught)
    expect((error as Error).message).to.include('the sandbox exited before it was ready')
    expect(await readFile(log, 'utf8')).to.include('nsinit: what the helpers said')
  })
})
