import {formatByteSize, parseByteSize} from '../util/byte-size.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import type {PathSegment, YamlFile} from '../util/yaml-file.js'
import {DEFAULT_RESOURCES, resourcesForTemplate, type ResourceSettings} from './resources.js'
import type {Setting} from './settings.js'

const KEYS = ['pids', 'memory', 'cpu_weight', 'vcpus', 'disk', 'max']
const MAX_KEYS = ['memory', 'vcpus', 'disk']
const SIZE_EXAMPLE = 'a size like 512MiB, 8GiB or 1073741824'

/** `backends.<name>.resources`: every sandbox's limits, and the most a policy may raise them to. */
export function resourcesSetting(): Setting<ResourceSettings> {
  return {
    default: DEFAULT_RESOURCES,
    description: [
      'Limits of every sandbox, set with cgroups (v2 where its controllers are available, else v1).',
      'Only a root daemon can set them; otherwise sandboxes run without them and the daemon warns once.',
      "A policy's sandbox.resources (vcpus, memory, disk) raises memory, vcpus and disk for its",
      'sandboxes, up to max below; asking for more is refused when the sandbox is created.',
      'Sizes: 512MiB, 8GiB, 2G, or bytes; "unlimited" turns a limit off.',
    ].join('\n'),
    notes: {
      pids: 'Processes and threads in one sandbox: a fork bomb stops here (fork fails with EAGAIN).',
      memory: 'Memory, page cache included; no swap beyond it. Over it, the kernel kills a process of the sandbox (exit 137 on linux-ns, 1 under gVisor).',
      cpu_weight: 'CPU share when CPUs are busy, 1-10000: 100 is the same share as any other process group.',
      vcpus: 'A hard CPU quota in CPUs, e.g. 2 or 0.5.',
      disk: 'What the sandbox may write (workspace changes, home, /tmp); checked while it runs: over it, its processes are stopped and it is marked failed.',
      max: "The most a policy may ask for; machine: this machine's memory, CPUs, or the size of the state filesystem.",
    },
    shown: resourcesForTemplate,
    parse(file, path, value) {
      const target = structuredClone(DEFAULT_RESOURCES)
      parseResources(file, path, value, target)
      return target
    },
  }
}

/** Validates `backends.linux-ns.resources` into `target`, reporting each problem where it is. */
export function parseResources(file: YamlFile, path: PathSegment[], value: unknown, target: ResourceSettings): void {
  if (value === undefined || value === null) return
  if (!isRecord(value)) {
    file.report(path, 'must be a mapping of limits (pids, memory, cpu_weight, vcpus, disk, max)')
    return
  }
  reportUnknownKeys(file, path, value, KEYS)
  const field = <T>(key: string, read: (raw: unknown) => T | undefined, expected: string, apply: (parsed: T) => void, at = value, base = path) => {
    const raw = at[key]
    if (raw === undefined || raw === null) return
    const parsed = read(raw)
    if (parsed === undefined) file.report([...base, key], `${JSON.stringify(raw)} is not ${expected}`)
    else apply(parsed)
  }
  field('pids', limitOf(count), 'a number of processes (at least 1) or unlimited', (parsed) => (target.pids = parsed))
  field('memory', limitOf(size), `${SIZE_EXAMPLE}, or unlimited`, (parsed) => (target.memory = parsed))
  field('cpu_weight', weight, 'a CPU weight from 1 to 10000', (parsed) => (target.cpu_weight = parsed))
  field('vcpus', limitOf(cpus), 'a number of CPUs like 2 or 0.5, or unlimited', (parsed) => (target.vcpus = parsed))
  field('disk', limitOf(size), `${SIZE_EXAMPLE}, or unlimited`, (parsed) => (target.disk = parsed))

  const {max} = value
  if (max !== undefined && max !== null) {
    if (isRecord(max)) {
      const maxPath = [...path, 'max']
      reportUnknownKeys(file, maxPath, max, MAX_KEYS)
      field('memory', maximumOf(size), `${SIZE_EXAMPLE}, or machine`, (parsed) => (target.max.memory = parsed), max, maxPath)
      field('vcpus', maximumOf(cpus), 'a number of CPUs like 4, or machine', (parsed) => (target.max.vcpus = parsed), max, maxPath)
      field('disk', maximumOf(size), `${SIZE_EXAMPLE}, or machine`, (parsed) => (target.max.disk = parsed), max, maxPath)
    } else {
      file.report([...path, 'max'], 'must be a mapping (memory, vcpus, disk)')
    }
  }
  for (const key of ['memory', 'vcpus', 'disk'] as const) {
    const limit = target[key]
    const most = target.max[key]
    if (typeof most === 'number' && (limit === 'unlimited' || limit > most)) {
      const shown = typeof limit === 'number' && key !== 'vcpus' ? formatByteSize(limit) : String(limit)
      file.report([...path, 'max', key], `is below the default ${key} (${shown}): what every sandbox gets cannot be more than a policy may ask for`)
    }
  }
}

function limitOf<T>(read: (raw: unknown) => T | undefined): (raw: unknown) => T | 'unlimited' | undefined {
  return (raw) => (raw === 'unlimited' ? 'unlimited' : read(raw))
}

function maximumOf<T>(read: (raw: unknown) => T | undefined): (raw: unknown) => T | 'machine' | undefined {
  return (raw) => (raw === 'machine' ? 'machine' : read(raw))
}

function count(raw: unknown): number | undefined {
  return typeof raw === 'number' && Number.isSafeInteger(raw) && raw >= 1 ? raw : undefined
}

function size(raw: unknown): number | undefined {
  const bytes = parseByteSize(raw)
  return bytes !== undefined && bytes > 0 ? bytes : undefined
}

function weight(raw: unknown): number | undefined {
  return typeof raw === 'number' && Number.isInteger(raw) && raw >= 1 && raw <= 10_000 ? raw : undefined
}

function cpus(raw: unknown): number | undefined {
  return typeof raw === 'number' && Number.isFinite(raw) && raw >= 0.01 && raw <= 1024 ? raw : undefined
}
