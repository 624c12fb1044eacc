import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, rm} from 'node:fs/promises'
import {join} from 'node:path'

import type {DaemonClient} from '../../src/client/client.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {eventually, sandboxDirs} from '../helpers/daemon-process.js'
import {tempDirs} from '../helpers/tmp.js'

/** The headers and body a sandboxed program gets from its proxy for a plain HTTP request. */
async function throughProxy(client: DaemonClient, id: string): Promise<string> {
  const ran = await client.run(id, {argv: ['curl', '--noproxy', '', '-sS', '-i', '-m', '10', '-x', 'http://127.0.0.1:3128', 'http://example.com/'], env: {}})
  return ran.stdout
}

describe('the daemon on a full disk', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-full-')
  let dir: string
  let stateDir: string
  let filler: string
  let test: TestDaemon | undefined
  let bwrapBefore: Set<number>

  beforeEach(async () => {
    bwrapBefore = await sandboxPids()
    dir = await dirs.make()
    stateDir = join(dir, 'state')
    filler = join(stateDir, 'filler')
    await mkdir(stateDir)
    // A small file system of its own: filling it fills nothing else.
    const mounted = await execa('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', stateDir], {reject: false})
    if (mounted.exitCode !== 0) throw new Error(`this test mounts a tmpfs and needs root for it: ${mounted.stderr}`)
  })

  afterEach(async () => {
    await rm(filler, {force: true})
    const logs = test?.logs ?? []
    await test?.daemon.close({shutdownSandboxes: true})
    test = undefined
    const left = await leftoverSandboxes(bwrapBefore, dir)
    for (const pid of left) process.kill(pid, 'SIGKILL')
    await execa('umount', ['-l', stateDir], {reject: false})
    await dirs.cleanup()
    expect(left, `sandboxes of this test still running after the daemon removed them all; its log:\n${logs.join('\n')}`).to.deep.equal([])
  })

  const fill = () => execa('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64k'], {reject: false})

  it('refuses egress it cannot log, says so, still removes every sandbox, and leaves nothing of a create that fails', async () => {
    test = await startTestDaemon(dir, undefined, {stateDir})
    const [a, b] = [await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null}), await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})]
    await fill()

    const answer = await throughProxy(test.client, a.sandbox_id)
    expect(answer).to.match(/^HTTP\/1\.1 403 Forbidden\r\n/)
    expect(answer).to.include('X-Cleanroom-Reason: audit_unavailable\r\n')
    expect(answer).to.match(/\r\n\r\naudit_unavailable: example\.com:80 was not tried: the sandbox's egress audit log cannot be written \(.+\), and the runtime config refuses connections that cannot be logged \(egress.audit_failure: deny\)$/)
    // The refusal's own audit line is written after the answer: the failure is known once that write has failed.
    await eventually('the audit failure to be reported', async () => (await test!.client.inspectSandbox(a.sandbox_id)).egress?.audit_error !== undefined)
    expect((await test.client.inspectSandbox(a.sandbox_id)).egress?.audit_error).to.match(/ENOSPC/)
    expect(test.logs.join('\n')).to.match(new RegExp(`sandbox ${a.sandbox_id}: egress audit log cannot be written: .*ENOSPC.*; connections out are refused until it can`))

    const error = (await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null}).catch((error_: unknown) => error_)) as CleanroomError
    expect(error.code).to.equal('backend_failed')
    expect(error.message).to.match(/^could not create the sandbox: .*ENOSPC/)
    expect((await test.client.listSandboxes(true)).map((sandbox) => sandbox.sandbox_id)).to.deep.equal([a.sandbox_id, b.sandbox_id])
    expect(await sandboxDirs(stateDir)).to.deep.equal([a.sandbox_id, b.sandbox_id])

    for (const sandbox of [a, b]) expect((await test.client.removeSandbox(sandbox.sandbox_id)).status).to.equal('stopped')
    expect(await sandboxDirs(stateDir)).to.deep.equal([])
    expect(await leftoverSandboxes(bwrapBefore, dir)).to.deep.equal([])

    // Space again: the log is written again and egress decides as usual.
    await rm(filler)
    const c = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    expect(await throughProxy(test.client, c.sandbox_id)).to.include('X-Cleanroom-Reason: host_not_allowed\r\n')
  })

  it('lets egress through unlogged when the runtime config says egress.audit_failure: allow, and reports it', async () => {
    test = await startTestDaemon(dir, undefined, {stateDir, config: {egress: {...DEFAULT_RUNTIME_CONFIG.egress, audit_failure: 'allow'}}})
    const sandbox = await test.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    await fill()
    expect(await throughProxy(test.client, sandbox.sandbox_id)).to.include('X-Cleanroom-Reason: host_not_allowed\r\n')
    await eventually('the audit failure to be reported', async () => (await test!.client.inspectSandbox(sandbox.sandbox_id)).egress?.audit_error !== undefined)
    expect(test.logs.join('\n')).to.match(new RegExp(`sandbox ${sandbox.sandbox_id}: egress audit log cannot be written: .*; connections out go on unlogged \\(egress.audit_failure: allow\\)`))
    expect((await test.client.inspectSandbox(sandbox.sandbox_id)).egress?.audit_error).to.match(/ENOSPC/)
  })
})
