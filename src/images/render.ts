import type {ImageEvent, LayerStatus} from './build.js'
import type {PruneResult} from './service.js'
import type {CachedImage} from './store.js'

const BAR_WIDTH = 24

/**
 * Pull progress on stderr: on a terminal, one bar per layer, redrawn in
 * place; otherwise plain lines, one when a layer starts and one when it is done.
 */
export class PullProgress {
  private readonly layers = new Map<string, {status: LayerStatus; current: number; total: number}>()
  private drawn = 0
  private readonly announced = new Set<string>()

  constructor(
    private readonly out: {write(text: string): unknown},
    private readonly terminal: boolean,
  ) {}

  update(event: ImageEvent): void {
    if (event.type === 'resolved') {
      for (const layer of event.layers) this.layers.set(layer.digest, {status: 'downloading', current: 0, total: layer.size})
      const size = event.layers.reduce((sum, layer) => sum + layer.size, 0)
      this.line(`resolved ${event.ref} to ${event.digest} (${event.layers.length} ${event.layers.length === 1 ? 'layer' : 'layers'}, ${formatBytes(size)})`)
      return
    }
    this.layers.set(event.digest, {status: event.status, current: event.current, total: event.total})
    if (this.terminal) return this.redraw()
    const step = `${event.digest} ${event.status}`
    if (this.announced.has(step)) return
    this.announced.add(step)
    this.out.write(`${short(event.digest)}: ${event.status} ${formatBytes(event.total)}\n`)
  }

  private line(text: string): void {
    this.out.write(`${text}\n`)
    this.drawn = 0
  }

  private redraw(): void {
    const up = this.drawn > 0 ? `\u001B[${this.drawn}A` : ''
    const lines = [...this.layers].map(([digest, layer]) => `\u001B[2K${short(digest)}  ${bar(layer.current, layer.total)}  ${`${formatBytes(layer.current)}/${formatBytes(layer.total)}`.padEnd(21)}  ${layer.status}`)
    this.out.write(`${up}${lines.join('\n')}\n`)
    this.drawn = lines.length
  }
}

/** `image pull`: what was pulled, and where its root filesystem is. */
export function renderPulled(result: {status: string; ref: string; image: CachedImage}): string {
  const {image} = result
  return [
    `${result.status} ${result.ref}`,
    `digest:   ${pinnedDigest(image, result.ref)}`,
    `image id: ${image.id}`,
    `platform: ${image.platform}`,
    `rootfs:   ${image.rootfs}`,
    `size:     ${formatBytes(image.size_bytes)}`,
  ].join('\n')
}

/** `image ls`: one row per reference (images with none show `<none>`). */
export function renderImageTable(images: readonly CachedImage[]): string {
  const rows = [['REF', 'DIGEST', 'IMAGE ID', 'PLATFORM', 'SIZE', 'CREATED']]
  for (const image of images) {
    const tagged = image.refs.filter((ref) => !ref.includes('@'))
    for (const ref of tagged.length > 0 ? tagged : ['<none>']) {
      rows.push([ref, short(pinnedDigest(image, ref)), short(image.id), image.platform, formatBytes(image.size_bytes), image.created_at])
    }
  }
  const widths = rows[0]!.map((_cell, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n')
}

export function renderPruned(result: PruneResult): string {
  if (result.removed.length === 0) return 'nothing to prune: every cached image is used by a sandbox or pinned by a policy'
  const verb = result.dry_run ? 'would remove' : 'removed'
  const lines = result.removed.map((image) => `${verb} ${short(image.id)} ${image.refs.filter((ref) => !ref.includes('@')).join(', ') || '<none>'}`)
  if (!result.dry_run) lines.push(`freed ${formatBytes(result.freed_bytes)}`)
  return lines.join('\n')
}

export function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${bytes} B`
  const units = ['kB', 'MB', 'GB', 'TB']
  let value = bytes
  let unit = -1
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000
    unit++
  }
  return `${value.toFixed(1)} ${units[unit]}`
}

/** The digest `ref`'s repository was pinned to (the index's, for a multi-platform image), else the manifest's. */
function pinnedDigest(image: CachedImage, ref: string): string {
  const at = ref.indexOf('@')
  if (at >= 0) return ref.slice(at + 1)
  const repository = ref.slice(0, ref.lastIndexOf(':') > ref.lastIndexOf('/') ? ref.lastIndexOf(':') : ref.length)
  return image.refs.find((name) => name.startsWith(`${repository}@`))?.slice(repository.length + 1) ?? image.manifest_digest
}

/** `sha256:` and the first 12 hex digits, as Docker shows ids. */
function short(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12)
}

function bar(current: number, total: number): string {
  const filled = total > 0 ? Math.min(BAR_WIDTH, Math.round((current / total) * BAR_WIDTH)) : BAR_WIDTH
  return `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}]`
}
