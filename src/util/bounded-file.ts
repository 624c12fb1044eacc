import {constants} from 'node:fs'
import {open} from 'node:fs/promises'

/** What reading a file with a size limit gave. */
export type BoundedRead =
  | {kind: 'bytes'; bytes: Buffer}
  | {kind: 'missing'}
  /** Bigger than the limit; nothing beyond its size was read. */
  | {kind: 'too-large'; size: number}
  /** A directory, fifo, socket or device: never read (a fifo would block, /dev/zero never ends). */
  | {kind: 'not-a-file'; type: string}

/**
 * Reads at most `maxBytes` of the file at `path`, deciding from the open file
 * itself (fstat), so a file swapped between a check and the read cannot slip
 * past. Symlinks are followed. Other errors (EACCES, …) are thrown.
 */
export async function readBoundedFile(path: string, maxBytes: number): Promise<BoundedRead> {
  let handle
  try {
    // O_NONBLOCK: opening a fifo must not wait for a writer.
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT' || code === 'ENOTDIR') return {kind: 'missing'}
    if (code === 'EISDIR') return {kind: 'not-a-file', type: 'a directory'}
    throw error
  }
  try {
    const stats = await handle.stat()
    if (!stats.isFile()) return {kind: 'not-a-file', type: fileType(stats)}
    if (stats.size > maxBytes) return {kind: 'too-large', size: stats.size}
    // Read to the end, not to the size fstat gave: the file may still grow. One byte past the limit is enough to refuse it.
    const chunks: Buffer[] = []
    let length = 0
    while (length <= maxBytes) {
      const chunk = Buffer.alloc(Math.min(maxBytes + 1 - length, Math.max(stats.size + 1 - length, 16_384)))
      const {bytesRead} = await handle.read(chunk, 0, chunk.length, length)
      if (bytesRead === 0) break
      chunks.push(chunk.subarray(0, bytesRead))
      length += bytesRead
    }
    if (length > maxBytes) return {kind: 'too-large', size: Math.max(length, stats.size)}
    return {kind: 'bytes', bytes: chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, length)}
  } finally {
    await handle.close()
  }
}

function fileType(stats: {isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isCharacterDevice(): boolean; isBlockDevice(): boolean}): string {
  if (stats.isDirectory()) return 'a directory'
  if (stats.isFIFO()) return 'a fifo'
  if (stats.isSocket()) return 'a socket'
  if (stats.isCharacterDevice() || stats.isBlockDevice()) return 'a device'
  return 'not a regular file'
}

/** A byte count as people read it: `12.7 MB (13312000 bytes)` — the exact count too, for limits near the edge. */
export function describeSize(bytes: number): string {
  const units = ['KiB', 'MiB', 'GiB']
  let value = bytes
  let unit = 'bytes'
  for (const next of units) {
    if (value < 1024) break
    value /= 1024
    unit = next
  }
  return unit === 'bytes' ? `${bytes} bytes` : `${value.toFixed(1)} ${unit} (${bytes} bytes)`
}
