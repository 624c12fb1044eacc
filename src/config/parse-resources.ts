import {formatByteSize, parseByteSize} from '../util/byte-size.js'
import {isRecord, reportUnknownKeys, type YamlFile} from '../util/yaml-file.js'
import type {ResourceSettings} from './resources.js'

const KEYS = ['pids', 'memory', 'cpu_weight', 'vcpus', 'disk', 'max']
const MAX_KEYS = ['memory', 'vcpus', 'disk']
const SIZE_EXAMPLE = 'a size like 512MiB, 8GiB or 1073741824'

/** Validates `backends.linux-ns.resources` into `target`, reporting each problem where it is. */
export function parseResources(file: YamlFile, path: string[], value: unknown, target: ResourceSettings): void {
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
