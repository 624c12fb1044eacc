import type {Socket} from 'node:net'

import {type HeadReader, ProtocolError} from './head-reader.js'
import type {Authority} from './http-head.js'

export const SOCKS_VERSION = 0x05

/** SOCKS5 reply codes (RFC 1928 §6). */
export const SocksReply = {
  succeeded: 0x00,
  generalFailure: 0x01,
  notAllowedByRuleset: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  connectionRefused: 0x05,
  commandNotSupported: 0x07,
  addressTypeNotSupported: 0x08,
} as const

const NO_AUTHENTICATION = 0x00
const NO_ACCEPTABLE_METHODS = 0xff
export const SOCKS_CONNECT = 0x01
const COMMAND_NAMES: Record<number, string> = {1: 'CONNECT', 2: 'BIND', 3: 'UDP ASSOCIATE'}
const ADDRESS_IPV4 = 0x01
const ADDRESS_DOMAIN = 0x03
const ADDRESS_IPV6 = 0x04

/** A SOCKS5 request: its command (only CONNECT is served) and the destination it names. */
export interface SocksRequest {
  readonly command: number
  readonly authority: Authority
}

/**
 * Negotiates "no authentication" and reads a request, whatever its command, so
 * that a refused BIND or UDP ASSOCIATE is audited with the destination it
 * named. The domain name is left unresolved: the proxy resolves it (remote
 * DNS), the sandbox has no resolver. Throws ProtocolError carrying the reply to
 * send, if any: once the greeting is answered, every failure gets a reply.
 */
export async function readSocksRequest(reader: HeadReader, client: Socket): Promise<SocksRequest> {
  const [version, methodCount = 0] = await reader.bytes(2)
  if (version !== SOCKS_VERSION) throw new ProtocolError('malformed_request', 'not a SOCKS5 greeting')
  const methods = await reader.bytes(methodCount)
  if (!methods.includes(NO_AUTHENTICATION)) {
    client.write(Buffer.from([SOCKS_VERSION, NO_ACCEPTABLE_METHODS]))
    throw new ProtocolError('unsupported_request', 'the SOCKS5 proxy offers only "no authentication"')
  }
  client.write(Buffer.from([SOCKS_VERSION, NO_AUTHENTICATION]))
  try {
    const [requestVersion, command = 0, , addressType] = await reader.bytes(4)
    if (requestVersion !== SOCKS_VERSION) throw new ProtocolError('malformed_request', 'not a SOCKS5 request', SocksReply.generalFailure)
    const host = await readAddress(reader, addressType)
    const port = (await reader.bytes(2)).readUInt16BE(0)
    return {command, authority: {host, port}}
  } catch (error) {
    if (error instanceof ProtocolError && error.socksReply === undefined) throw new ProtocolError(error.reason, error.message, SocksReply.generalFailure)
    throw error
  }
}

/** The refusal of a command other than CONNECT: no listener (BIND) and no UDP relay (UDP ASSOCIATE) is ever opened. */
export function unsupportedCommand(command: number): ProtocolError {
  const name = COMMAND_NAMES[command] ?? `command ${command}`
  return new ProtocolError('unsupported_request', `SOCKS5 ${name} is not supported (only CONNECT)`, SocksReply.commandNotSupported)
}

/** A reply with an all-zero bound address: the proxy's own address is none of the sandbox's business. */
export function socksReply(code: number): Buffer {
  return Buffer.from([SOCKS_VERSION, code, 0x00, ADDRESS_IPV4, 0, 0, 0, 0, 0, 0])
}

async function readAddress(reader: HeadReader, addressType: number | undefined): Promise<string> {
  switch (addressType) {
    case ADDRESS_IPV4: {
      return [...(await reader.bytes(4))].join('.')
    }
    case ADDRESS_IPV6: {
      const bytes = await reader.bytes(16)
      return Array.from({length: 8}, (_, group) => bytes.readUInt16BE(group * 2).toString(16)).join(':')
    }
    case ADDRESS_DOMAIN: {
      const [length = 0] = await reader.bytes(1)
      // Invalid UTF-8 decodes to U+FFFD, which no valid host contains.
      return new TextDecoder().decode(await reader.bytes(length))
    }
    default: {
      throw new ProtocolError('unsupported_request', `SOCKS5 address type ${addressType} is not supported`, SocksReply.addressTypeNotSupported)
    }
  }
}
