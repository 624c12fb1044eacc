import type {HeadReader} from './head-reader.js'
import type {Authority} from './http-head.js'

/** The first byte of a SOCKS4 or SOCKS4a request. */
export const SOCKS4_VERSION = 0x04

/** SOCKS4's reply "request rejected or failed" (91), with the all-zero address it carries. */
export const SOCKS4_REJECTED = Buffer.from([0x00, 0x5b, 0, 0, 0, 0, 0, 0])

const COMMAND_NAMES: Record<number, string> = {1: 'CONNECT', 2: 'BIND'}

/** A SOCKS4 or SOCKS4a request, read only to audit what it asked for: the proxy never serves one. */
export interface Socks4Request {
  readonly variant: 'SOCKS4' | 'SOCKS4a'
  readonly command: string
  readonly authority: Authority
}

/**
 * Reads a SOCKS4 request (version, command, port, IPv4 address, user id, NUL)
 * and, for SOCKS4a (address 0.0.0.x with x > 0), the host name after the user
 * id. The user id is read past, never kept. SOCKS4 has no remote DNS for
 * names but 4a's, no way to say why a request failed, and no IPv6, so the
 * proxy refuses both and points to SOCKS5.
 */
export async function readSocks4Request(reader: HeadReader): Promise<Socks4Request> {
  const head = await reader.bytes(8)
  const command = head[1] ?? 0
  const port = head.readUInt16BE(2)
  const address = [...head.subarray(4, 8)]
  await reader.through('\0')
  const named = address[0] === 0 && address[1] === 0 && address[2] === 0 && address[3] !== 0
  // Invalid UTF-8 decodes to U+FFFD, which no valid host contains.
  const host = named ? new TextDecoder().decode((await reader.through('\0')).subarray(0, -1)) : address.join('.')
  return {variant: named ? 'SOCKS4a' : 'SOCKS4', command: COMMAND_NAMES[command] ?? `command ${command}`, authority: {host, port}}
}
