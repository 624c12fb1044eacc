import {expect} from 'chai'
import {execFile, spawn, spawnSync} from 'node:child_process'
import {access, readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {promisify} from 'node:util'

import type {ResourceSettings} from '../../src/config/resources.js'
import {statusOf} from '../../src/daemon/http.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {newSandboxId} from '../../src/sandbox/ids.js'
import {type CgroupHost, probeCgroups} from '../../src/sandbox/backends/linux-ns/cgroup-host.js'
import {cgroupDirs, cgroupProcesses, createSandboxCgroup, removeSandboxCgroup, sweepSandboxCgroups} from '../../src/sandbox/backends/linux-ns/cgroups.js'
import type {LinuxNsRuntime} from '../../src/sandbox/backends/linux-ns/runtime.js'
import {PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'
import {waitFor} from './helpers.js'
import {FORK_BOMB, limitsSuite, MEMORY_HOG, MiB} from './limited-daemon.js'

const exec = promisify(execFile)

describe('resource limits of linux-ns sandboxes (cgroups)', function () {
  this.timeout(90_000)
  const suite = limitsSuite('linux-ns', 'cleanroom-limits-')
  const dirs = tempDirs('cleanroom-limits-nonroot-')
  afterEach(() => dirs.cleanup())
  const start = (resources: Partial<ResourceSettings>) => suite.start(resources)

  async function sandbox(): Promise<string> {
    const created = await suite.running.client.createSandbox({policy: DEFAULT_POLICY, workspace_source: null})
    suite.track(created.sandbox_id)
    return created.sandbox_id
  }

  const runtimeOf = (id: string) => suite.runtimeOf<LinuxNsRuntime>(id)
  const cgroupOf = (id: string) => suite.cgroupOf(id)

  /** Runs `argv` in the sandbox and says how long the answer took. */
  async function timedRun(id: string, argv: string[]): Promise<{exitCode: number; ms: number}> {
    const started = performance.now()
    const ran = await suite.running.client.run(id, {argv, env: {}})
    return {exitCode: ran.exit_code, ms: performance.now() - started}
  }

  it('stops a fork bomb at its pids limit (fork fails with EAGAIN) while another sandbox and the daemon stay responsive', async () => {
    const {client} = await start({pids: 64})
    const [bomb, other] = [await sandbox(), await sandbox()]
    const pids = runtimeOf(bomb).cgroup!.dirs.pids!
    await client.run(bomb, {argv: ['sh', '-c', 'perl -e "$0" </dev/null >/dev/null 2>&1 &', FORK_BOMB], env: {}})
    await waitFor('the bomb to reach its pids limit', async () => Number(await readFile(join(pids, 'pids.current'), 'utf8')) >= 64, 10_000)

    const pings: number[] = []
    const execs: {exitCode: number; ms: number}[] = []
    for (let round = 0; round < 3; round++) {
      const started = performance.now()
      await client.ping()
      pings.push(performance.now() - started)
      execs.push(await timedRun(other, ['true']))
    }
    // The host can still start processes, and the bomb never got past its limit.
    expect(spawnSync('true').status).to.equal(0)
    expect(Number(await readFile(join(pids, 'pids.current'), 'utf8'))).to.be.at.most(64)
    expect(execs.map((ran) => ran.exitCode)).to.deep.equal([0, 0, 0])
    expect(Math.max(...pings), `ping answered in ${pings.map(Math.round).join(', ')} ms`).to.be.below(1000)
    // The median of the three: one exec held up by the rest of a busy machine says nothing about the bomb.
    const median = execs.map((ran) => ran.ms).sort((a, b) => a - b)[1]!
    expect(median, `exec -- true in the other sandbox took ${execs.map((ran) => Math.round(ran.ms)).join(', ')} ms`).to.be.below(3000)
    const told = await readFile(join(runtimeOf(bomb).state_dir, 'tmp', 'bomb.err'), 'utf8')
    expect(new Set(told.trim().split('\n'))).to.deep.equal(new Set(['Resource temporarily unavailable']))
  })

  it("OOM-kills a memory hog inside its own cgroup (exit 137), touching neither its sandbox's other processes, another sandbox nor the daemon", async () => {
    const {client} = await start({memory: 96 * MiB})
    const [hog, other] = [await sandbox(), await sandbox()]
    await client.run(hog, {argv: ['sh', '-c', 'sleep 600 </dev/null >/dev/null 2>&1 & echo $! > /tmp/sleep.pid'], env: {}})
    const ran = await client.run(hog, {argv: ['perl', '-e', MEMORY_HOG], env: {}})
    expect([ran.exit_code, ran.signal]).to.deep.equal([137, 'SIGKILL'])
    expect(await oomKills(runtimeOf(hog)), 'OOM kills in the hog sandbox').to.equal(1)
    expect(await oomKills(runtimeOf(other)), 'OOM kills in the other sandbox').to.equal(0)
    expect((await client.run(hog, {argv: ['sh', '-c', 'kill -0 "$(cat /tmp/sleep.pid)"'], env: {}})).exit_code, 'the sandbox keeps its other processes').to.equal(0)
    expect((await timedRun(other, ['true'])).exitCode).to.equal(0)
    expect((await client.inspectSandbox(hog)).status).to.equal('ready')
    expect((await client.ping()).pid).to.equal(process.pid)
  })

  it('shows the limits in force in `sandbox inspect` and its --json, and removes the cgroup at rm', async () => {
    const {client, socketPath} = await start({pids: 128, memory: 256 * MiB, cpu_weight: 50, vcpus: 0.5, disk: 64 * MiB})
    const id = await sandbox()
    const probe = probeCgroups()
    const version = probe.ok ? `v${probe.host.version}` : 'none'
    const expected = {cgroup: version, pids: 128, memory_bytes: 256 * MiB, cpu_weight: 50, vcpus: 0.5, disk_bytes: 64 * MiB}
    const json = await runCli(['sandbox', 'inspect', id, '--json', '--host', `unix://${socketPath}`])
    expect(json.exitCode, json.stderr).to.equal(0)
    expect((JSON.parse(json.stdout) as {resources: unknown}).resources).to.deep.equal(expected)
    const text = await runCli(['sandbox', 'inspect', id, '--host', `unix://${socketPath}`])
    expect(text.stdout).to.contain(`limits:    pids 128, memory 256 MiB, cpu weight 50, vcpus 0.5, disk 64 MiB (cgroup ${version})`)
    // The kernel holds what was asked for.
    const {dirs} = runtimeOf(id).cgroup!
    const read = (dir: string | undefined, file: string) => readFile(join(dir!, file), 'utf8').then((text) => text.trim())
    if (version === 'v1') {
      expect(await read(dirs.memory, 'memory.limit_in_bytes')).to.equal(String(256 * MiB))
      expect([await read(dirs.cpu, 'cpu.shares'), await read(dirs.cpu, 'cpu.cfs_quota_us')]).to.deep.equal(['512', '50000'])
    } else {
      expect([await read(dirs.memory, 'memory.max'), await read(dirs.cpu, 'cpu.max')]).to.deep.equal([String(256 * MiB), '50000 100000'])
    }
    expect(await read(dirs.pids, 'pids.max')).to.equal('128')

    const paths = cgroupOf(id)
    await client.removeSandbox(id)
    expect(await Promise.all(paths.map(exists))).to.deep.equal(paths.map(() => false))
  })

  it("raises the limits to what the policy's sandbox.resources asks for, and refuses more than the maximum leaving nothing behind", async () => {
    const {daemon} = await start({memory: 128 * MiB, max: {memory: 512 * MiB, vcpus: 'machine', disk: 'machine'}})
    const create = (resources: Record<string, number>) =>
      daemon.manager.create({backend: 'linux-ns', policy: {...DEFAULT_POLICY, resources} as typeof DEFAULT_POLICY, policySource: null, workspaceSource: null, allowAll: false})
    const raised = await create({memory_bytes: 256 * MiB})
    suite.track(raised.sandbox_id)
    expect(raised.resources).to.include({memory_bytes: 256 * MiB})
    const refused = await create({memory_bytes: 1024 * MiB}).catch((error: unknown) => error)
    expect(refused).to.be.instanceOf(CleanroomError).and.include({code: 'resources_over_maximum'})
    expect((refused as CleanroomError).message).to.equal(
      'the policy asks for sandbox.resources.memory 1 GiB, more than a sandbox may have here: 512 MiB, backends.linux-ns.resources.max.memory',
    )
    expect(statusOf(refused as CleanroomError), 'what the API answers').to.equal(422)
    expect(daemon.manager.list(true).map((record) => record.sandbox_id)).to.deep.equal([raised.sandbox_id])
  })

  it('stops a sandbox that writes more than its disk limit and marks it failed, keeping its files; rm still removes it', async () => {
    const {client} = await start({disk: 8 * MiB})
    const [writer, background] = [await sandbox(), await sandbox()]
    const inFlight = client.run(writer, {argv: ['sleep', '600'], env: {}})
    // Written into a directory the sandbox then makes unreadable: it still counts.
    const wrote = await client.run(writer, {argv: ['sh', '-c', 'mkdir /tmp/hidden && dd if=/dev/zero of=/tmp/hidden/big bs=1M count=12 status=none && chmod 000 /tmp/hidden'], env: {}})
    expect(wrote.exit_code).to.equal(0)
    await waitFor('the writer to be marked failed', async () => (await client.inspectSandbox(writer)).status === 'failed', 5000)
    const failed = await client.inspectSandbox(writer)
    expect(failed.failure).to.match(/^it wrote 1[23](\.\d)? MiB, over its disk limit of 8 MiB: its processes were stopped\. Save its changes/)
    // A command still running in it ends instead of hanging; nothing of it is left running; its files stay.
    const ended = await Promise.race([inFlight, sleep(10_000).then(() => undefined)])
    expect(ended && [ended.exit_code, ended.signal], 'the command that was running').to.deep.equal([137, 'SIGKILL'])
    await waitFor('no process left in its cgroup', async () => (await cgroupProcesses(runtimeOf(writer).cgroup!)).length === 0, 5000)
    expect((await stat(join(runtimeOf(writer).state_dir, 'tmp', 'hidden', 'big'))).size).to.equal(12 * MiB)
    const refused = await client.run(writer, {argv: ['true'], env: {}}).catch((error: unknown) => error)
    expect(refused).to.be.instanceOf(CleanroomError).and.include({code: 'sandbox_failed'})
    await waitFor('the daemon log to say why', () => suite.running.logs.some((line) => line.includes(`sandbox ${writer}: failed: it wrote`)), 2000)

    // A process that writes in the background, after its exec returned, is caught by the periodic check.
    await client.run(background, {argv: ['sh', '-c', '(sleep 1; dd if=/dev/zero of=/tmp/big bs=1M count=12 status=none; sleep 600) </dev/null >/dev/null 2>&1 &'], env: {}})
    await waitFor('the background writer to be marked failed', async () => (await client.inspectSandbox(background)).status === 'failed', 15_000)

    for (const id of [writer, background]) {
      const paths = cgroupOf(id)
      await client.removeSandbox(id)
      expect(await Promise.all(paths.map(exists))).to.deep.equal(paths.map(() => false))
    }
  })

  it('without cgroups (non-root daemon): refuses a policy asking for limits, warns once about the defaults, and doctor says why', async () => {
    const work = await dirs.make()
    // nobody: oclif (doctor) needs a uid with a passwd entry.
    await exec('chown', ['65534:65534', work])
    const script = new URL('nonroot-limits.ts', import.meta.url).pathname
    const {stdout} = await exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, '--import', 'tsx', script, work], {
      cwd: PROJECT_ROOT,
      env: {PATH: process.env.PATH, HOME: '/nonexistent', TMPDIR: work},
    })
    const seen = JSON.parse(stdout) as {capabilities: Record<string, boolean>; warnings: string[]; refusal: {code: string; message: string}; resources: unknown[]}
    expect(seen.capabilities).to.include({'resources.cpu': false, 'resources.memory': false, 'resources.disk': false})
    expect(seen.refusal.code).to.equal('backend_capability_mismatch')
    expect(seen.refusal.message).to.equal(
      'backend linux-ns cannot enforce this policy: it lacks resources.memory (only a root daemon can create cgroups, and this one runs as uid 65534)',
    )
    expect(seen.warnings).to.have.length(1)
    expect(seen.warnings[0]).to.match(/^resource limits are off: only a root daemon can create cgroups, and this one runs as uid 65534; sandboxes run without the limits of backends\.linux-ns\.resources/)
    expect(seen.resources).to.deep.equal([null, null])

    const doctor = await exec('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, join(PROJECT_ROOT, 'bin/run.js'), 'doctor', '--json'], {
      cwd: work,
      env: {PATH: process.env.PATH, HOME: work, XDG_RUNTIME_DIR: join(work, 'run')},
    }).catch((error: {stdout: string}) => error)
    const report = JSON.parse(doctor.stdout) as {checks: {name: string; status: string; detail: string}[]}
    expect(report.checks.find((check) => check.name === 'resource limits (linux-ns)')).to.deep.include({status: 'warn'})
    expect(report.checks.find((check) => check.name === 'resource limits (linux-ns)')!.detail).to.match(/^off: only a root daemon can create cgroups, and this one runs as uid 65534\. /)
  })
})

describe('the sweep of leftover sandbox cgroups', () => {
  it('removes an empty cgroup no claim names, never a claimed one or one with a process in it', async () => {
    const probe = probeCgroups()
    expect(probe.ok, `this machine cannot enforce limits: ${probe.ok ? '' : probe.problem}`).to.equal(true)
    const host = (probe as {host: CgroupHost}).host
    const limits = {pids: 16, memory_bytes: 64 * MiB, cpu_weight: 100, vcpus: null, disk_bytes: null}
    const [orphan, claimed, busy] = [newSandboxId(), newSandboxId(), newSandboxId()]
    const made = await Promise.all([orphan, claimed, busy].map((id) => createSandboxCgroup(host, id, limits)))
    const sleeper = spawn('sleep', ['600'], {stdio: 'ignore'})
    try {
      for (const dir of cgroupDirs(made[2]!)) await writeFile(join(dir, 'cgroup.procs'), String(sleeper.pid))
      // Other sandboxes' cgroups on this machine count as claimed: this sweep may only judge the three made here.
      const removed = await sweepSandboxCgroups(host, (id) => id !== orphan && id !== busy, 0)
      expect(removed).to.deep.equal([orphan])
      expect(await Promise.all(cgroupDirs(made[0]!).map(exists))).to.deep.equal(cgroupDirs(made[0]!).map(() => false))
      expect(await exists(made[1]!.dirs.pids!)).to.equal(true)
      expect(await exists(made[2]!.dirs.pids!)).to.equal(true)
      // An empty one no claim names, but younger than a minute, is left alone: its sandbox may be starting.
      expect(await sweepSandboxCgroups(host, (id) => id !== claimed)).to.deep.equal([])
      expect(await exists(made[1]!.dirs.pids!)).to.equal(true)
    } finally {
      sleeper.kill('SIGKILL')
      await new Promise((resolve) => sleeper.once('exit', resolve))
      for (const cgroup of made) await removeSandboxCgroup(cgroup)
    }
    expect(await Promise.all(made.flatMap(cgroupDirs).map(exists))).to.deep.equal(made.flatMap(cgroupDirs).map(() => false))
  })
})

async function exists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  )
}

/** How many processes the kernel's OOM killer has killed in the sandbox's memory cgroup. */
async function oomKills(runtime: LinuxNsRuntime): Promise<number> {
  const dir = runtime.cgroup!.dirs.memory!
  const text = await readFile(join(dir, runtime.cgroup!.version === 2 ? 'memory.events' : 'memory.oom_control'), 'utf8')
  return Number(/^oom_kill (\d+)$/m.exec(text)?.[1] ?? 0)
}
