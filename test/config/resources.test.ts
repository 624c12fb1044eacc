import {expect} from 'chai'

import {DEFAULT_RESOURCES} from '../../src/config/resources.js'
import {parseRuntimeConfigText} from '../../src/config/parse.js'
import {DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import {renderConfigTemplate} from '../../src/config/template.js'
import {CleanroomError} from '../../src/errors/index.js'
import {formatByteSize, parseByteSize} from '../../src/util/byte-size.js'

const GiB = 1024 ** 3
const MiB = 1024 ** 2

function resourcesOf(yaml: string) {
  return parseRuntimeConfigText('/x/config.yaml', `backends:\n  linux-ns:\n    resources:\n${yaml}`).backends['linux-ns'].resources
}

function problems(yaml: string): string[] {
  try {
    resourcesOf(yaml)
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError).and.have.property('code', 'config_invalid')
    return (error as CleanroomError).message.split('\n').slice(1)
  }
  throw new Error('expected the config to be invalid')
}

describe('backends.linux-ns.resources in the runtime config', () => {
  it('defaults to pids 4096, 8 GiB of memory, weight 100, no CPU quota, 20 GiB of disk, at most the machine', () => {
    expect(DEFAULT_RUNTIME_CONFIG.backends['linux-ns'].resources).to.deep.equal({
      pids: 4096,
      memory: 8 * GiB,
      cpu_weight: 100,
      vcpus: 'unlimited',
      disk: 20 * GiB,
      max: {memory: 'machine', vcpus: 'machine', disk: 'machine'},
    })
  })

  it('reads sizes in binary and decimal units, plain bytes, unlimited and machine', () => {
    const yaml = ['      pids: 512', '      memory: 1.5GiB', '      cpu_weight: 50', '      vcpus: 0.5', '      disk: 2G', '      max: {memory: 16GB, vcpus: 2, disk: machine}', ''].join('\n')
    expect(resourcesOf(yaml)).to.deep.equal({
      pids: 512,
      memory: 1.5 * GiB,
      cpu_weight: 50,
      vcpus: 0.5,
      disk: 2 * GiB,
      max: {memory: 16_000_000_000, vcpus: 2, disk: 'machine'},
    })
    expect(resourcesOf('      memory: unlimited\n      disk: 1048576\n')).to.include({memory: 'unlimited', disk: MiB})
    expect(resourcesOf('      pids: 64\n')).to.deep.equal({...DEFAULT_RESOURCES, pids: 64})
  })

  it('reports each wrong value and unknown key at its line and column', () => {
    const lines = problems(
      ['      pids: 0', '      memory: 8 gigs', '      cpu_weight: 20000', '      vcpus: -1', '      swap: 0', '      disk: machine', '      max: {memory: unlimited, cores: 2}', ''].join('\n'),
    )
    expect(lines).to.deep.equal([
      '/x/config.yaml:4:13 backends.linux-ns.resources.pids: 0 is not a number of processes (at least 1) or unlimited',
      '/x/config.yaml:5:15 backends.linux-ns.resources.memory: "8 gigs" is not a size like 512MiB, 8GiB or 1073741824, or unlimited',
      '/x/config.yaml:6:19 backends.linux-ns.resources.cpu_weight: 20000 is not a CPU weight from 1 to 10000',
      '/x/config.yaml:7:14 backends.linux-ns.resources.vcpus: -1 is not a number of CPUs like 2 or 0.5, or unlimited',
      '/x/config.yaml:8:7 backends.linux-ns.resources.swap: unknown key (expected one of: pids, memory, cpu_weight, vcpus, disk, max)',
      '/x/config.yaml:9:13 backends.linux-ns.resources.disk: "machine" is not a size like 512MiB, 8GiB or 1073741824, or unlimited',
      '/x/config.yaml:10:21 backends.linux-ns.resources.max.memory: "unlimited" is not a size like 512MiB, 8GiB or 1073741824, or machine',
      '/x/config.yaml:10:32 backends.linux-ns.resources.max.cores: unknown key (expected one of: memory, vcpus, disk)',
    ])
  })

  it('refuses a maximum below the default every sandbox gets', () => {
    expect(problems('      memory: 8GiB\n      max: {memory: 4GiB}\n')).to.deep.equal([
      '/x/config.yaml:5:21 backends.linux-ns.resources.max.memory: is below the default memory (8 GiB): what every sandbox gets cannot be more than a policy may ask for',
    ])
    expect(problems('      vcpus: unlimited\n      max: {vcpus: 2}\n')[0]).to.contain('max.vcpus: is below the default vcpus (unlimited)')
  })

  it('is written by config init with a comment per limit, and reads back as the defaults', () => {
    const text = renderConfigTemplate([])
    expect(text).to.contain('    resources:\n      # Processes and threads in one sandbox')
    expect(text).to.contain('      memory: 8GiB\n')
    expect(text).to.contain('      disk: 20GiB\n')
    expect(text).to.contain('        vcpus: machine\n')
    expect(parseRuntimeConfigText('/x/config.yaml', text)).to.deep.equal(DEFAULT_RUNTIME_CONFIG)
  })
})

describe('byte sizes', () => {
  const sizes: [unknown, number | undefined][] = [
    [0, 0],
    [4096, 4096],
    ['4096', 4096],
    ['512MiB', 512 * MiB],
    ['512 MiB', 512 * MiB],
    ['8gib', 8 * GiB],
    ['2G', 2 * GiB],
    ['1.5GiB', 1.5 * GiB],
    ['1GB', 1e9],
    ['10kB', 10_000],
    ['1TiB', 1024 ** 4],
    [-1, undefined],
    [1.5, undefined],
    ['-1GiB', undefined],
    ['8 gigs', undefined],
    ['GiB', undefined],
    ['', undefined],
    [null, undefined],
    ['99999999999999TiB', undefined],
  ]
  for (const [text, bytes] of sizes) {
    it(`${JSON.stringify(text)} is ${bytes ?? 'not a size'}`, () => expect(parseByteSize(text)).to.equal(bytes))
  }

  it('prints binary units with at most one decimal', () => {
    expect([17, 2048, 640 * MiB, 1.5 * GiB, 8 * GiB, 20 * GiB + 1].map(formatByteSize)).to.deep.equal(['17 B', '2 KiB', '640 MiB', '1.5 GiB', '8 GiB', '20 GiB'])
  })
})
