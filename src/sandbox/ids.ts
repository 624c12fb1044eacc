import {randomBytes} from 'node:crypto'

/** Crockford's base32, the ULID alphabet: sortable, no I L O U. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ'

/** A ULID: 48 bits of milliseconds then 80 random bits, 26 characters, sortable by creation time. */
export function ulid(now: number = Date.now()): string {
  let time = ''
  let ms = now
  for (let i = 0; i < 10; i++) {
    time = ALPHABET[ms % 32] + time
    ms = Math.floor(ms / 32)
  }
  const random = randomBytes(16)
  let rest = ''
  for (let i = 0; i < 16; i++) rest += ALPHABET[random[i]! % 32]
  return time + rest
}

export const SANDBOX_ID_PATTERN = /^cr_[0-9A-HJKMNP-TV-Z]{26}$/
export const EXEC_ID_PATTERN = /^exec_[0-9A-HJKMNP-TV-Z]{26}$/

export function newSandboxId(): string {
  return `cr_${ulid()}`
}

export function newExecId(): string {
  return `exec_${ulid()}`
}
