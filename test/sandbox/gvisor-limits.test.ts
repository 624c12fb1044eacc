import {expect} from 'chai'
import {access, readFile, stat} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import type {ResourceSettings} from '../../src/config/resources.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {describeResources} from '../../src/sandbox/resources.js'
import {hostLimits} from '../../src/sandbox/backends/gvisor/limits.js'
import type {GvisorRuntime} from '../../src/sandbox/backends/gvisor/runtime.js'
import {cgroupProcesses} from '../../src/sandbox/backends/linux-ns/cgroups.js'
import {waitFor} from './helpers.js'
import {FORK_BOMB, limitsSuite, MEMORY_HOG, MiB} from './limited-daemon.js'

describe('resource limits of gvisor sandboxes (cgroups around runsc, RLIMIT_NPROC inside)', function () {
  this.timeout(120_000)
  const suite = limitsSuite('gvisor', 'cleanroom-gvlimits-')
  const start = (resources: Partial<ResourceSettings>) => suite.start(resources)

  async function sandbox(resources?: Record<string, number>): Promise<string> {
    const policy = (resources ? {...DEFAULT_POLICY, resources} : DEFAULT_POLICY) as typeof DEFAULT_POLICY
    const created = await suite.running.daemon.manager.create({backend: 'gvisor', policy, policySource: null, workspaceSource: null, allowAll: false})
    suite.track(created.sandbox_id)
    return created.sandbox_id
  }

  const runtimeOf = (id: string) => suite.runtimeOf<GvisorRuntime>(id)
  const cgroupOf = (id: string) => suite.cgroupOf(id)

  const read = (path: string) => readFile(path, 'utf8').then((text) => text.trim())

  it("puts runsc, the gVisor kernel and the gofer in the sandbox's cgroup, shows the limits in inspect, and removes the cgroup at rm", async () => {
    const {client} = await start({pids: 128, memory: 256 * MiB, cpu_weight: 50, vcpus: 0.5, disk: 64 * MiB})
    const id = await sandbox()
    const runtime = runtimeOf(id)
    const inCgroup = await cgroupProcesses(runtime.cgroup!)
    expect(inCgroup).to.include.members([runtime.sandbox_pid, runtime.gofer_pid])
    const shown = (await client.inspectSandbox(id)).resources
    expect(shown && describeResources(shown)).to.equal(`pids 128, memory 256 MiB, cpu weight 50, vcpus 0.5, disk 64 MiB (cgroup v${runtime.cgroup!.version})`)
    // The workload's tasks are limited inside; the host cgroup leaves room for gVisor's own threads and stubs.
    expect(await read(join(runtime.cgroup!.dirs.pids!, 'pids.max'))).to.equal(String(hostLimits({...runtime.resources!}).pids))
    const limits = await client.run(id, {argv: ['sh', '-c', 'grep "Max processes" /proc/self/limits | tr -s " "'], env: {}})
    expect(limits.stdout.trim()).to.equal('Max processes 128 128 processes')
    const paths = cgroupOf(id)
    await client.removeSandbox(id)
    expect(await Promise.all(paths.map((path) => access(path).then(() => true, () => false)))).to.deep.equal(paths.map(() => false))
  })

  it('stops a fork bomb at its pids limit inside gVisor (fork fails with EAGAIN) and the sandbox keeps running', async () => {
    const {client} = await start({pids: 64})
    const bomb = await sandbox()
    const runtime = runtimeOf(bomb)
    await client.run(bomb, {argv: ['sh', '-c', 'perl -e "$0" </dev/null >/dev/null 2>&1 &', FORK_BOMB], env: {}})
    const errors = join(runtime.state_dir, 'tmp', 'bomb.err')
    await waitFor('a fork to fail', async () => (await readFile(errors, 'utf8').catch(() => '')) !== '', 10_000)
    expect(Number(await read(join(runtime.cgroup!.dirs.pids!, 'pids.current')))).to.be.below(hostLimits(runtime.resources!).pids!)
    expect(new Set((await read(errors)).split('\n'))).to.deep.equal(new Set(['Resource temporarily unavailable']))
    await sleep(8000)
    expect((await client.run(bomb, {argv: ['echo', 'alive'], env: {}})).exit_code).to.equal(0)
    expect((await client.inspectSandbox(bomb)).status).to.equal('ready')
  })

  it("ends a memory hog whose memory the host's OOM killer takes back, keeping the sandbox and its other processes", async () => {
    const {client} = await start({memory: 96 * MiB})
    const hog = await sandbox()
    await client.run(hog, {argv: ['sh', '-c', 'sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleep.pid'], env: {}})
    const ran = await client.run(hog, {argv: ['perl', '-e', MEMORY_HOG], env: {}})
    // gVisor ends the process whose host stub was killed with exit status 1.
    expect([ran.exit_code, ran.signal]).to.deep.equal([1, null])
    const control = await read(join(runtimeOf(hog).cgroup!.dirs.memory!, 'memory.oom_control')).catch(() => '')
    if (control !== '') expect(Number(/^oom_kill (\d+)$/m.exec(control)?.[1] ?? 0)).to.be.at.least(1)
    expect((await client.run(hog, {argv: ['sh', '-c', 'kill -0 "$(cat /tmp/sleep.pid)"'], env: {}})).exit_code, 'the sandbox keeps its other processes').to.equal(0)
    expect((await client.inspectSandbox(hog)).status).to.equal('ready')
  })

  it("raises the limits to the policy's sandbox.resources and refuses more than the maximum, naming the gvisor setting", async () => {
    const {daemon} = await start({memory: 128 * MiB, max: {memory: 512 * MiB, vcpus: 'machine', disk: 'machine'}})
    const raised = await sandbox({memory_bytes: 256 * MiB})
    expect(daemon.manager.get(raised).resources).to.include({memory_bytes: 256 * MiB})
    expect(await read(join(runtimeOf(raised).cgroup!.dirs.memory!, 'memory.limit_in_bytes')).catch(async () => read(join(runtimeOf(raised).cgroup!.dirs.memory!, 'memory.max')))).to.equal(String(256 * MiB))
    const refused = await sandbox({memory_bytes: 1024 * MiB}).catch((error: unknown) => error)
    expect(refused).to.be.instanceOf(CleanroomError).and.include({code: 'resources_over_maximum'})
    expect((refused as CleanroomError).message).to.equal('the policy asks for sandbox.resources.memory 1 GiB, more than a sandbox may have here: 512 MiB, backends.gvisor.resources.max.memory')
    expect(daemon.manager.list(true).map((record) => record.sandbox_id)).to.deep.equal([raised])
  })

  it('stops a sandbox that writes more than its disk limit and marks it failed, keeping its files', async () => {
    const {client} = await start({disk: 8 * MiB})
    const writer = await sandbox()
    const wrote = await client.run(writer, {argv: ['sh', '-c', 'dd if=/dev/zero of=/tmp/big bs=1M count=12 status=none'], env: {}})
    expect(wrote.exit_code).to.equal(0)
    await waitFor('the writer to be marked failed', async () => (await client.inspectSandbox(writer)).status === 'failed', 5000)
    expect((await client.inspectSandbox(writer)).failure).to.match(/^it wrote 1[23](\.\d)? MiB, over its disk limit of 8 MiB: its processes were stopped\./)
    await waitFor('no process left in its cgroup', async () => (await cgroupProcesses(runtimeOf(writer).cgroup!)).length === 0, 10_000)
    expect((await stat(join(runtimeOf(writer).state_dir, 'tmp', 'big'))).size).to.equal(12 * MiB)
  })
})
