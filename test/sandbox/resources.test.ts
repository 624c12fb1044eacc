import {expect} from 'chai'

import {DEFAULT_RESOURCES, type ResourceSettings} from '../../src/config/resources.js'
import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {chooseCgroupHost, findCgroupMounts, limitWrites} from '../../src/sandbox/backends/linux-ns/cgroup-host.js'
import {describeResources, planLimits, requestedResources, type ResourceRequest, type SandboxLimits} from '../../src/sandbox/resources.js'

const GiB = 1024 ** 3
const MACHINE = {memory_bytes: 24 * GiB, cpus: 2, disk_bytes: 250 * GiB}

/** This machine's cgroup mounts: hybrid, the limit controllers on v1, cgroup2 with hugetlb only. */
const HYBRID = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`
/** A systemd host of today: cgroup2 only. */
const UNIFIED = `25 30 0:23 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`
/** An older v1 host: cpu and cpuacct mounted together. */
const LEGACY = `30 25 0:26 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:10 - cgroup cgroup rw,cpu,cpuacct
31 25 0:27 / /sys/fs/cgroup/memory rw,nosuid shared:11 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids
33 25 0:29 / /sys/fs/cgroup/freezer rw,nosuid shared:13 - cgroup cgroup rw,freezer
`

function settings(changes: Partial<ResourceSettings> = {}): ResourceSettings {
  return {...DEFAULT_RESOURCES, ...changes, max: {...DEFAULT_RESOURCES.max, ...changes.max}}
}

function refusal(action: () => unknown): CleanroomError {
  try {
    action()
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError)
    return error as CleanroomError
  }
  throw new Error('expected a refusal')
}

describe('sandbox limits from the runtime config and the policy', () => {
  const defaults: SandboxLimits = {pids: 4096, memory_bytes: 8 * GiB, cpu_weight: 100, vcpus: null, disk_bytes: 20 * GiB}
  const cases: [string, Partial<ResourceSettings>, ResourceRequest | undefined, SandboxLimits][] = [
    ['no request: the runtime config', {}, undefined, defaults],
    ['a request below the default keeps the default (policies ask for at least)', {}, {memory_bytes: 2 * GiB, disk_bytes: GiB}, defaults],
    ['a request above the default raises it', {}, {memory_bytes: 12 * GiB, disk_bytes: 40 * GiB}, {...defaults, memory_bytes: 12 * GiB, disk_bytes: 40 * GiB}],
    ['vcpus on an unlimited default stays unlimited', {}, {vcpus: 2}, defaults],
    ['vcpus above a configured quota raises it', {vcpus: 0.5}, {vcpus: 1.5}, {...defaults, vcpus: 1.5}],
    ['unlimited memory stays unlimited', {memory: 'unlimited'}, {memory_bytes: 4 * GiB}, {...defaults, memory_bytes: null}],
    ['a request equal to the maximum is allowed', {max: {memory: 16 * GiB, vcpus: 'machine', disk: 'machine'}}, {memory_bytes: 16 * GiB}, {...defaults, memory_bytes: 16 * GiB}],
    ['pids and cpu weight come from the runtime config only', {pids: 64, cpu_weight: 20}, {memory_bytes: GiB}, {...defaults, pids: 64, cpu_weight: 20}],
  ]
  for (const [name, changes, request, expected] of cases) {
    it(name, () => expect(planLimits(settings(changes), request, MACHINE)).to.deep.equal(expected))
  }

  it('refuses a request above the configured maximum, naming both settings and the fix', () => {
    const error = refusal(() => planLimits(settings({max: {memory: 16 * GiB, vcpus: 'machine', disk: 'machine'}}), {memory_bytes: 32 * GiB}, MACHINE))
    expect(error.code).to.equal('resources_over_maximum')
    expect(error.message).to.equal('the policy asks for sandbox.resources.memory 32 GiB, more than a sandbox may have here: 16 GiB, backends.linux-ns.resources.max.memory')
    expect(error.suggestions).to.deep.equal(['Ask for 16 GiB or less in cleanroom.yaml', 'Or raise backends.linux-ns.resources.max.memory in the runtime config (cleanroom config path)'])
  })

  it("refuses more CPUs or disk than the machine has when the maximum is the machine's", () => {
    expect(refusal(() => planLimits(settings(), {vcpus: 4}, MACHINE)).message).to.equal(
      "the policy asks for sandbox.resources.vcpus 4, more than a sandbox may have here: 2, this machine's CPU count (backends.linux-ns.resources.max.vcpus is machine)",
    )
    expect(refusal(() => planLimits(settings(), {disk_bytes: 300 * GiB}, MACHINE)).message).to.contain("250 GiB, this machine's state filesystem size")
  })

  it("reads the policy's sandbox.resources in the Go tool's compiled field names, ignoring anything else", () => {
    expect(requestedResources(DEFAULT_POLICY)).to.equal(undefined)
    const policy = {...DEFAULT_POLICY, resources: {vcpus: 2, memory_bytes: 8 * GiB, disk_bytes: 0, colour: 'blue'}}
    expect(requestedResources(policy)).to.deep.equal({vcpus: 2, memory_bytes: 8 * GiB})
  })

  it('describes the limits in force in one line', () => {
    expect(describeResources({cgroup: 'v1', ...defaults, vcpus: 1.5})).to.equal('pids 4096, memory 8 GiB, cpu weight 100, vcpus 1.5, disk 20 GiB (cgroup v1)')
  })
})

describe('cgroup hierarchies', () => {
  it('uses v1 on a hybrid host whose cgroup2 mount has none of the limit controllers (this machine)', () => {
    const mounts = findCgroupMounts(HYBRID)
    expect(mounts.v2).to.equal('/sys/fs/cgroup/unified')
    expect(chooseCgroupHost(mounts, ['hugetlb'])).to.deep.equal({
      ok: true,
      host: {
        version: 1,
        roots: {
          pids: '/sys/fs/cgroup/pids',
          memory: '/sys/fs/cgroup/memory',
          cpu: '/sys/fs/cgroup/cpu',
          freezer: '/sys/fs/cgroup/freezer',
          cpuacct: '/sys/fs/cgroup/cpuacct',
        },
      },
    })
  })

  it('uses v2 where its root offers pids, memory and cpu', () => {
    const root = '/sys/fs/cgroup'
    expect(chooseCgroupHost(findCgroupMounts(UNIFIED), ['cpuset', 'cpu', 'io', 'memory', 'hugetlb', 'pids', 'rdma', 'misc'])).to.deep.equal({
      ok: true,
      host: {version: 2, roots: {pids: root, memory: root, cpu: root, freezer: root}},
    })
  })

  it('finds co-mounted v1 controllers in one hierarchy', () => {
    const chosen = chooseCgroupHost(findCgroupMounts(LEGACY), undefined)
    expect(chosen.ok && chosen.host.roots).to.deep.include({cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct'})
  })

  it('says what is missing when neither version can limit', () => {
    const mounts = findCgroupMounts(UNIFIED)
    expect(chooseCgroupHost(mounts, ['memory'])).to.deep.equal({
      ok: false,
      problem: 'no cgroup hierarchy offers pids, memory and cpu: cgroup2 at /sys/fs/cgroup offers memory, and cgroup v1 lacks pids, memory, cpu, freezer',
    })
  })

  const limits: SandboxLimits = {pids: 64, memory_bytes: 256 * 1024 ** 2, cpu_weight: 50, vcpus: 1.5, disk_bytes: GiB}
  it('writes v2 limits: pids.max, memory.max with no swap, cpu.weight, cpu.max', () => {
    expect(limitWrites(2, limits).map(({file, value}) => `${file}=${value}`)).to.deep.equal([
      'pids.max=64',
      'memory.max=268435456',
      'memory.swap.max=0',
      'cpu.weight=50',
      'cpu.max=150000 100000',
    ])
    expect(limitWrites(2, {...limits, pids: null, memory_bytes: null, vcpus: null}).map(({file, value}) => `${file}=${value}`)).to.deep.equal(['pids.max=max', 'memory.max=max', 'cpu.weight=50', 'cpu.max=max 100000'])
  })

  it('writes v1 limits: memory before memory+swap, shares scaled from the weight, a CFS quota', () => {
    expect(limitWrites(1, limits).map(({file, value, optional}) => `${file}=${value}${optional ? '?' : ''}`)).to.deep.equal([
      'pids.max=64',
      'memory.limit_in_bytes=268435456',
      'memory.memsw.limit_in_bytes=268435456?',
      'cpu.shares=512',
      'cpu.cfs_period_us=100000',
      'cpu.cfs_quota_us=150000',
    ])
    const unlimited = limitWrites(1, {...limits, memory_bytes: null, vcpus: null, cpu_weight: 100})
    expect(unlimited.map(({file, value, optional}) => `${file}=${value}${optional ? '?' : ''}`)).to.deep.equal([
      'pids.max=64',
      'memory.limit_in_bytes=-1',
      'memory.memsw.limit_in_bytes=-1?',
      'cpu.shares=1024',
      'cpu.cfs_period_us=100000?',
      'cpu.cfs_quota_us=-1?',
    ])
  })
})
