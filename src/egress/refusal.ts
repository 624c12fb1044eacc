import {HEAD_END} from './http-head.js'
import {type RefusalDetail, type RefusalReason, refusalMessage, refusalStatus, shownReason} from './messages.js'
import {SocksReply} from './socks5.js'

const STATUS_TEXT: Record<number, string> = {
  400: 'Bad Request',
  403: 'Forbidden',
  408: 'Request Timeout',
  431: 'Request Header Fields Too Large',
  502: 'Bad Gateway',
}

/** The bytes that may start an HTTP request: the characters of a method name (a token). */
const TOKEN_BYTE = /^[!#$%&'*+.^_`|~\w-]$/

/** Whether a connection whose first byte is `byte` may be an HTTP request; anything else is refused at once, not after the head timeout. */
export function startsHttpRequest(byte: number): boolean {
  return TOKEN_BYTE.test(String.fromCharCode(byte))
}

/** A refused HTTP request's answer: status, `X-Cleanroom-Reason`, and the one-line message as body; the connection closes. */
export function httpRefusal(detail: RefusalDetail): string {
  const status = refusalStatus(detail.reason)
  const body = refusalMessage(detail)
  const head = [
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? 'Error'}`,
    'Content-Type: text/plain; charset=utf-8',
    `Content-Length: ${Buffer.byteLength(body)}`,
    `X-Cleanroom-Reason: ${shownReason(detail.reason)}`,
    'Connection: close',
  ]
  return `${head.join('\r\n')}${HEAD_END}${body}`
}

/** The SOCKS5 reply for a refusal: "not allowed by ruleset" for the policy, the network's own answer for a failed dial. */
export function socksReplyFor({reason, why}: {reason: RefusalReason; why?: string}): number | undefined {
  switch (reason) {
    case 'resolve_failed': {
      return SocksReply.hostUnreachable
    }
    case 'upstream_failed': {
      if (why === 'ECONNREFUSED') return SocksReply.connectionRefused
      if (why === 'ENETUNREACH') return SocksReply.networkUnreachable
      if (why === 'EHOSTUNREACH' || why === 'ETIMEDOUT') return SocksReply.hostUnreachable
      return SocksReply.generalFailure
    }
    default: {
      return SocksReply.notAllowedByRuleset
    }
  }
}
