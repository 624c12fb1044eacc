import {formatByteSize} from '../util/byte-size.js'

/** `unlimited`: no limit of that kind. */
export type Limit = number | 'unlimited'
/** `machine`: this machine's size (its memory, its CPUs, the size of the filesystem holding sandbox state). */
export type Maximum = number | 'machine'

/**
 * `backends.linux-ns.resources`: the limits every sandbox gets, and the most a
 * repository policy's `sandbox.resources` may raise them to (docs/backends.md#resource-limits).
 */
export interface ResourceSettings {
  /** Processes and threads in one sandbox. */
  pids: Limit
  /** Memory in bytes (page cache included); swap is not allowed beyond it. */
  memory: Limit
  /** CPU share relative to other sandboxes and the host's processes (1-10000; 100 is an equal share). */
  cpu_weight: number
  /** CPUs' worth of time per period (a quota), e.g. 1.5. */
  vcpus: Limit
  /** Bytes the sandbox may write (its workspace changes, home and /tmp). */
  disk: Limit
  max: {memory: Maximum; vcpus: Maximum; disk: Maximum}
}

export const DEFAULT_RESOURCES: ResourceSettings = {
  pids: 4096,
  memory: 8 * 1024 ** 3,
  cpu_weight: 100,
  vcpus: 'unlimited',
  disk: 20 * 1024 ** 3,
  max: {memory: 'machine', vcpus: 'machine', disk: 'machine'},
}

/** The resources block as YAML shows it (sizes in binary units), for `config init`. */
export function resourcesForTemplate(settings: ResourceSettings = DEFAULT_RESOURCES): Record<string, unknown> {
  const size = (value: Limit | Maximum) => (typeof value === 'number' ? formatByteSize(value).replace(' ', '') : value)
  return {
    pids: settings.pids,
    memory: size(settings.memory),
    cpu_weight: settings.cpu_weight,
    vcpus: settings.vcpus,
    disk: size(settings.disk),
    max: {memory: size(settings.max.memory), vcpus: settings.max.vcpus, disk: size(settings.max.disk)},
  }
}
