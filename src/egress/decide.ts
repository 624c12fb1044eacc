import {HostPatternError, hostKind, hostMatches, normalizeHostPattern} from '../policy/host.js'
import {isPort} from '../policy/rules.js'
import type {AllowRule, CompiledPolicy} from '../policy/schema.js'

export type EgressAction = 'allow' | 'deny'

/** Why a destination was allowed or refused: stable codes, shown to agents and written to the audit log. */
export type EgressReason =
  | 'allowed_all'
  | 'allowed_by_cidr'
  | 'allowed_by_rule'
  | 'allowed_by_wildcard'
  | 'ambiguous_body_length'
  | 'audit_unavailable'
  | 'connection_limit'
  | 'denied_by_rule'
  | 'forbidden_address'
  | 'head_timeout'
  | 'head_too_large'
  | 'header_too_large'
  | 'host_mismatch'
  | 'host_not_allowed'
  | 'invalid_host'
  | 'invalid_port'
  | 'malformed_request'
  | 'port_not_allowed'
  | 'resolve_failed'
  | 'resolves_to_forbidden_address'
  | 'too_many_headers'
  | 'unsupported_request'

export interface EgressDecision {
  readonly action: EgressAction
  readonly reason: EgressReason
  /** The host pattern of the policy rule that decided (`*.github.com`, `10.0.0.0/8`); absent when no rule did. */
  readonly rule?: string
}

/**
 * A destination host as the proxy will use it: a normalised DNS name, or an IP
 * address in canonical text (an IPv4-mapped IPv6 address as plain IPv4).
 */
export type Destination =
  | {readonly kind: 'name'; readonly host: string}
  | {readonly kind: 'ip'; readonly host: string; readonly family: 4 | 6}

export interface DecideOptions {
  /** `--dangerously-allow-all`: allow whatever no deny rule refuses. */
  readonly allowAll?: boolean
}

/**
 * Letters, digits and marks of any script (IDN), `-`, `.` and its ideographic
 * forms, and the `:`/`[]` of IPv6. Everything else is refused before
 * normalising, because the IDN mapping would silently drop or decode it
 * (`ex%41mple.com`, a soft hyphen, a tab) into a different name.
 */
const DESTINATION_CHARACTERS = /^[\p{L}\p{M}\p{N}.\-:[\]\u3002\uFF0E\uFF61]+$/u
const MAX_DESTINATION_LENGTH = 1024
const IPV4_MAPPED = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/

/**
 * The destination `raw` names, or undefined when it is not a valid host name
 * or IP address. Numeric IPv4 spellings other than canonical dotted decimal
 * (`2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`) are refused, as is a name
 * whose last label is a number in any base (`foo.0x10`): they are addresses to
 * some parsers and names to others, so they can mean neither here.
 */
export function parseDestination(raw: string): Destination | undefined {
  if (raw.length > MAX_DESTINATION_LENGTH || !DESTINATION_CHARACTERS.test(raw)) return undefined
  let host: string
  try {
    host = normalizeHostPattern(raw)
  } catch (error) {
    if (error instanceof HostPatternError) return undefined
    throw error
  }
  const kind = hostKind(host)
  if (kind === 'name') return /\.0x[\da-f]*$/.test(`.${host}`) ? undefined : {kind, host}
  if (kind !== 'ip') return undefined
  const mapped = IPV4_MAPPED.exec(host)?.[1]
  if (mapped !== undefined) return {kind, host: mapped, family: 4}
  return {kind, host, family: host.includes(':') ? 6 : 4}
}

/**
 * Whether the policy lets a sandbox connect to `host` on `port`, by name and
 * port only (the address check that follows for allowed destinations is in
 * addresses.ts). Order: explicit deny → exact allow → wildcard allow → IP/CIDR
 * allow (IP literals only) → `allowAll` → default deny. A name is matched only
 * by name and wildcard rules, an IP literal only by IP and CIDR rules.
 */
export function decide(policy: CompiledPolicy, host: string, port: number, options: DecideOptions = {}): EgressDecision {
  const destination = parseDestination(host)
  if (destination === undefined) return {action: 'deny', reason: 'invalid_host'}
  if (!isPort(port)) return {action: 'deny', reason: 'invalid_port'}

  const denial = policy.deny.find((rule) => hostMatches(rule.host, destination.host) && (rule.ports === undefined || rule.ports.includes(port)))
  if (denial) return {action: 'deny', reason: 'denied_by_rule', rule: denial.host}

  const matching = policy.allow.filter((rule) => hostMatches(rule.host, destination.host)).sort(byPrecedence)
  const allowing = matching.find((rule) => rule.ports.includes(port))
  if (allowing) return {action: 'allow', reason: allowReason(allowing), rule: allowing.host}
  if (options.allowAll) return {action: 'allow', reason: 'allowed_all'}
  const [hostOnly] = matching
  if (hostOnly) return {action: 'deny', reason: 'port_not_allowed', rule: hostOnly.host}
  return {action: 'deny', reason: 'host_not_allowed'}
}

/** Exact rules (a name or one address) before wildcards and CIDRs, so the reason names the most specific rule. */
function byPrecedence(a: AllowRule, b: AllowRule): number {
  return precedence(a) - precedence(b)
}

function precedence(rule: AllowRule): number {
  const kind = hostKind(rule.host)
  return kind === 'name' || kind === 'ip' ? 0 : 1
}

function allowReason(rule: AllowRule): EgressReason {
  switch (hostKind(rule.host)) {
    case 'wildcard': {
      return 'allowed_by_wildcard'
    }
    case 'cidr': {
      return 'allowed_by_cidr'
    }
    case 'name':
    case 'ip': {
      return 'allowed_by_rule'
    }
  }
}
