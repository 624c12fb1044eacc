import {describeSize, readBoundedFile} from '../util/bounded-file.js'
import {isRecord} from '../util/record.js'

/** A package.json is small; anything bigger is not one worth parsing. */
const MAX_PACKAGE_JSON_BYTES = 1 << 20

/** A plugin's package.json given as bytes (from a fetched tarball or a linked directory), parsed within the size limit. */
export function parsePackageJsonBytes(bytes: Buffer): Record<string, unknown> {
  if (bytes.length > MAX_PACKAGE_JSON_BYTES) throw new Error(`package.json is ${bytes.length} bytes, more than the ${MAX_PACKAGE_JSON_BYTES} a plugin's may have`)
  const parsed: unknown = JSON.parse(bytes.toString('utf8'))
  if (!isRecord(parsed)) throw new Error('package.json is not a JSON object')
  return parsed
}

/**
 * A directory's package.json, read only if it is a regular file of at most
 * MAX_PACKAGE_JSON_BYTES: a fifo named package.json would block the read for good,
 * a link to /dev/zero never end, a huge file fill the memory.
 */
export async function readPackageJsonFile(path: string): Promise<Buffer> {
  const read = await readBoundedFile(path, MAX_PACKAGE_JSON_BYTES)
  if (read.kind === 'missing') throw new Error(`${path} does not exist`)
  if (read.kind === 'not-a-file') throw new Error(`${path} is ${read.type}, not a file`)
  if (read.kind === 'too-large') throw new Error(`${path} is ${describeSize(read.size)}: a package.json may be at most ${describeSize(MAX_PACKAGE_JSON_BYTES)}`)
  return read.bytes
}
