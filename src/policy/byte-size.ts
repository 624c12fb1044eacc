/**
 * Byte sizes as the Go cleanroom writes them in a policy: a whole number of
 * bytes (`8589934592`), or a number and a unit (`8GiB`, `4096MiB`, `1.5G`,
 * `500MB`). Units, case-insensitive: b; k, kib = 1024; kb = 1000; m, mib; mb;
 * g, gib; gb; t, tib; tb; p, pib; pb. The result is computed exactly (no
 * floating point), must be a whole number of bytes, and at most 2^53 - 1.
 */

const MULTIPLIERS: Readonly<Record<string, bigint>> = {
  b: 1n,
  k: 1n << 10n,
  kb: 1000n,
  kib: 1n << 10n,
  m: 1n << 20n,
  mb: 1000n ** 2n,
  mib: 1n << 20n,
  g: 1n << 30n,
  gb: 1000n ** 3n,
  gib: 1n << 30n,
  t: 1n << 40n,
  tb: 1000n ** 4n,
  tib: 1n << 40n,
  p: 1n << 50n,
  pb: 1000n ** 5n,
  pib: 1n << 50n,
}

/** Why a value is not a byte size; the message reads well after a path. */
export class ByteSizeError extends Error {}

/** The number of bytes `value` (a YAML integer or string) stands for. */
export function parseByteSize(value: unknown): number {
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw new ByteSizeError(`${value} is not a whole number of bytes up to ${Number.MAX_SAFE_INTEGER}: use a size such as 8GiB`)
    return value
  }
  if (typeof value !== 'string') throw new ByteSizeError('must be a byte size: a number of bytes or a size such as 8GiB')
  const text = value.trim()
  const match = /^(\d{1,30})(?:\.(\d{1,30}))?\s*([a-z]*)$/i.exec(text)
  if (!match) throw new ByteSizeError(`${JSON.stringify(value)} is not a byte size: write a number and a unit, such as 8GiB or 512MiB`)
  const [, whole = '', fraction = '', unitText = ''] = match
  const unit = unitText.toLowerCase()
  if (unit === '' && fraction !== '') throw new ByteSizeError(`${JSON.stringify(value)} is a fraction of a byte: give a unit (e.g. 1.5GiB) or whole bytes`)
  const multiplier = unit === '' ? 1n : MULTIPLIERS[unit]
  if (multiplier === undefined) throw new ByteSizeError(`${JSON.stringify(value)} has an unknown unit "${unitText}" (use B, KiB, MiB, GiB, TiB, PiB, or KB, MB, GB, TB, PB)`)
  const scale = 10n ** BigInt(fraction.length)
  const scaled = (BigInt(whole) * scale + BigInt(fraction === '' ? '0' : fraction)) * multiplier
  if (scaled % scale !== 0n) throw new ByteSizeError(`${JSON.stringify(value)} is not a whole number of bytes`)
  const bytes = scaled / scale
  if (bytes > BigInt(Number.MAX_SAFE_INTEGER)) throw new ByteSizeError(`${JSON.stringify(value)} is more than ${Number.MAX_SAFE_INTEGER} bytes`)
  return Number(bytes)
}

/** `8 GiB` for 8589934592, `1536 MiB` for 1610612736: the largest binary unit that divides the size, else bytes. */
export function formatByteSize(bytes: number): string {
  const units = ['PiB', 'TiB', 'GiB', 'MiB', 'KiB'] as const
  for (const [i, unit] of units.entries()) {
    const size = 2 ** (10 * (units.length - i))
    if (bytes >= size && bytes % size === 0) return `${bytes / size} ${unit}`
  }
  return `${bytes} bytes`
}
