import type {ForbiddenClass} from './addresses.js'
import type {EgressReason} from './decide.js'

/** Why the proxy answered with an error instead of a connection: a policy or protocol reason, or a failed dial. */
export type RefusalReason = EgressReason | 'upstream_failed'

/** What the proxy knows about a refused attempt, for the one-line message a sandboxed program (or its agent) reads. */
export interface RefusalDetail {
  readonly reason: RefusalReason
  /** As the proxy understood it, or as sent when it is not a valid host. */
  readonly host: string
  readonly port: number
  readonly rule?: string
  readonly address?: string
  readonly addressClass?: ForbiddenClass
  /** An error code, or what was wrong with the request. */
  readonly why?: string
}

const ALLOW_HINT = 'sandbox.network.allow in cleanroom.yaml'

const CLASS_PHRASES: Record<ForbiddenClass, string> = {
  'link-local': 'a link-local address',
  'local-interface': "one of the host's own addresses",
  loopback: 'a loopback address',
  metadata: 'a cloud metadata address',
  multicast: 'a multicast address',
  reserved: 'a reserved address',
  unspecified: 'the unspecified address',
}

/**
 * The reason a sandboxed program is told. A port the policy does not list for a
 * host is, to the program, a destination the policy does not allow: one stable
 * code and message for "add it to the allow list". The audit log keeps the detail.
 */
export function shownReason(reason: RefusalReason): RefusalReason {
  return reason === 'port_not_allowed' ? 'host_not_allowed' : reason
}

/** The body of an HTTP refusal: one line that starts with the reason code and says what to change. */
export function refusalMessage(shown: RefusalDetail): string {
  const detail = {...shown, reason: shownReason(shown.reason)}
  const target = formatTarget(detail.host, detail.port)
  const {address = '', addressClass = 'reserved', port, rule = '', why = ''} = detail
  const ipRuleHint = `to reach it anyway, allow ${address} on port ${port} with an IP rule in ${ALLOW_HINT}`
  const text = ((): string => {
    switch (detail.reason) {
      case 'host_not_allowed': {
        return `${target} is not allowed by the sandbox policy (add it to ${ALLOW_HINT})`
      }
      case 'port_not_allowed': {
        return `${target} is not allowed by the sandbox policy: the rule for ${rule} does not list port ${port} (add the port to that rule in ${ALLOW_HINT})`
      }
      case 'denied_by_rule': {
        const via = address !== '' && address !== detail.host ? ` (it resolves to ${address})` : ''
        return `${target}${via} is refused by the deny rule for ${rule} in sandbox.network.deny in cleanroom.yaml`
      }
      case 'resolves_to_forbidden_address': {
        return `${detail.host} resolves to ${address}, ${CLASS_PHRASES[addressClass]}, which a sandbox may not reach (${ipRuleHint})`
      }
      case 'forbidden_address': {
        return `${target} is ${CLASS_PHRASES[addressClass]}, which a sandbox may not reach (${ipRuleHint})`
      }
      case 'resolve_failed': {
        return `${detail.host} could not be resolved (${why})`
      }
      case 'audit_unavailable': {
        return `${target} was not tried: the sandbox's egress audit log cannot be written (${why}), and the runtime config refuses connections that cannot be logged (egress.audit_failure: deny)`
      }
      case 'invalid_host': {
        return `${JSON.stringify(detail.host)} is not a valid host name or IP address (IPv4 addresses are four decimal numbers, e.g. 10.0.0.1)`
      }
      case 'invalid_port': {
        return `${port} is not a port (1-65535)`
      }
      case 'upstream_failed': {
        return `could not connect to ${target} at ${address} (${why})`
      }
      case 'ambiguous_body_length':
      case 'connection_limit':
      case 'head_timeout':
      case 'head_too_large':
      case 'header_too_large':
      case 'host_mismatch':
      case 'malformed_request':
      case 'too_many_headers':
      case 'unsupported_request': {
        return why
      }
      case 'allowed_all':
      case 'allowed_by_cidr':
      case 'allowed_by_rule':
      case 'allowed_by_wildcard': {
        return `${target} is allowed`
      }
    }
  })()
  return `${detail.reason}: ${text}`
}

/** The HTTP status for a refusal: 403 for the policy, 400 for a bad request, 502 when the destination failed. */
export function refusalStatus(reason: RefusalReason): number {
  switch (reason) {
    case 'audit_unavailable':
    case 'denied_by_rule':
    case 'forbidden_address':
    case 'host_not_allowed':
    case 'port_not_allowed':
    case 'resolves_to_forbidden_address': {
      return 403
    }
    case 'head_timeout': {
      return 408
    }
    case 'head_too_large':
    case 'header_too_large':
    case 'too_many_headers': {
      return 431
    }
    case 'resolve_failed':
    case 'upstream_failed': {
      return 502
    }
    default: {
      return 400
    }
  }
}

/** `host:port`, with an IPv6 address in brackets. */
export function formatTarget(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}

/** The short form of an error for messages and the audit log: its code (`ECONNREFUSED`) when it has one. */
export function errorCode(error: unknown): string {
  if (error instanceof Error && 'code' in error && typeof error.code === 'string') return error.code
  return error instanceof Error ? error.message : String(error)
}
