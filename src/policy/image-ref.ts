/** An OCI image reference pinned to one manifest by its digest. */
export interface PinnedImageRef {
  /** `repo@sha256:<hex>`, as written (trimmed). */
  ref: string
  /** `sha256:<hex>` */
  digest: string
}

/** Why an image reference cannot be used; the message reads well after a path. */
export class ImageRefError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ImageRefError'
  }
}

const DIGEST = /^sha256:[\da-f]{64}$/

/** Splits `repo@sha256:<64 lowercase hex>`; the checks and messages follow the Go cleanroom's. */
export function parsePinnedImageRef(raw: string): PinnedImageRef {
  const ref = raw.trim()
  const at = ref.indexOf('@')
  if (at < 0) throw new ImageRefError(`${quote(ref)} is not digest-pinned (expected repo/image@sha256:<digest>)`)
  const repository = ref.slice(0, at)
  const digest = ref.slice(at + 1)
  if (repository.trim() === '') throw new ImageRefError(`${quote(ref)} has an empty repository`)
  if (/\s/.test(repository)) throw new ImageRefError(`${quote(ref)} contains whitespace in repository`)
  if (!DIGEST.test(digest)) throw new ImageRefError(`${quote(ref)} must include sha256 digest with 64 lowercase hex characters`)
  return {ref, digest}
}

function quote(text: string): string {
  return JSON.stringify(text)
}
