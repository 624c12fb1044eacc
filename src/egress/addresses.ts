import {lookup} from 'node:dns/promises'
import {networkInterfaces} from 'node:os'

import {hostMatches} from '../policy/host.js'
import type {CompiledPolicy} from '../policy/schema.js'
import {type Destination, type EgressDecision, parseDestination} from './decide.js'
import {errorCode} from './messages.js'

/** Resolves a host name to its addresses, once per connection. */
export type Resolver = (host: string) => Promise<string[]>

/** The address classes a sandbox may not reach unless an IP rule names them. */
export type ForbiddenClass = 'link-local' | 'local-interface' | 'loopback' | 'metadata' | 'multicast' | 'reserved' | 'unspecified'

export interface AddressCheckOptions {
  readonly resolver?: Resolver
  /** The addresses of the host's own interfaces; read from `os.networkInterfaces()` at each check by default. */
  readonly localAddresses?: () => readonly string[]
}

/** Where to dial, or why not. */
export type AddressChoice = AddressAccepted | AddressRefused

export interface AddressAccepted {
  readonly ok: true
  readonly address: string
  readonly family: 4 | 6
}

export interface AddressRefused {
  readonly ok: false
  readonly decision: EgressDecision
  /** The address refused, when one was. */
  readonly address?: string
  readonly addressClass?: ForbiddenClass
  /** Why resolving failed (`ENOTFOUND`). */
  readonly why?: string
}

interface ForbiddenRange {
  /** An IP or CIDR in the notation of src/policy/host.ts. */
  readonly range: string
  readonly class: ForbiddenClass
}

/** Most specific first: an address in several ranges is reported by the first. */
const FORBIDDEN_RANGES: readonly ForbiddenRange[] = [
  {range: '169.254.169.254', class: 'metadata'},
  {range: '100.100.100.200', class: 'metadata'},
  {range: '168.63.129.16', class: 'metadata'},
  {range: 'fd00:ec2::254', class: 'metadata'},
  {range: '0.0.0.0/8', class: 'unspecified'},
  {range: '127.0.0.0/8', class: 'loopback'},
  {range: '169.254.0.0/16', class: 'link-local'},
  {range: '224.0.0.0/4', class: 'multicast'},
  {range: '240.0.0.0/4', class: 'reserved'},
  {range: '::', class: 'unspecified'},
  {range: '::1', class: 'loopback'},
  // The rest of ::/96: deprecated IPv4-compatible addresses (::127.0.0.1).
  {range: '::/96', class: 'reserved'},
  {range: 'fe80::/10', class: 'link-local'},
  {range: 'ff00::/8', class: 'multicast'},
]

/** The host's resolver (getaddrinfo), answers in its order of preference. */
export const systemResolver: Resolver = async (host) => {
  const answers = await lookup(host, {all: true, verbatim: true})
  return answers.map((answer) => answer.address)
}

/**
 * The address the proxy dials for an allowed destination. A name is resolved
 * once, here; the proxy dials the address returned and never the name. Each
 * candidate (the resolver's answers in order, or the IP literal itself) is
 * refused when a deny IP/CIDR rule covers it on `port`, or when it is in a
 * forbidden class (loopback, link-local, multicast, unspecified, reserved,
 * cloud metadata, the host's own interfaces) that no narrow enough allow rule
 * opens: see `opensForbidden`. The first candidate not refused is chosen.
 */
export async function chooseDialAddress(
  policy: CompiledPolicy,
  destination: Destination,
  port: number,
  options: AddressCheckOptions = {},
): Promise<AddressChoice> {
  let candidates: readonly string[] = [destination.host]
  if (destination.kind === 'name') {
    try {
      candidates = await (options.resolver ?? systemResolver)(destination.host)
    } catch (error) {
      return {ok: false, decision: {action: 'deny', reason: 'resolve_failed'}, why: errorCode(error)}
    }
    if (candidates.length === 0) return {ok: false, decision: {action: 'deny', reason: 'resolve_failed'}, why: 'no addresses'}
  }

  const local = (options.localAddresses ?? interfaceAddresses)()
  let firstRefusal: AddressRefused | undefined
  for (const candidate of candidates) {
    const choice = checkAddress(policy, destination, candidate, port, local)
    if (choice.ok) return choice
    firstRefusal ??= choice
  }
  return firstRefusal ?? {ok: false, decision: {action: 'deny', reason: 'resolve_failed'}, why: 'no addresses'}
}

/** The forbidden classes `address` belongs to (empty when it may be dialled by default). */
export function forbiddenClasses(address: string, localAddresses: readonly string[] = interfaceAddresses()): ForbiddenClass[] {
  return forbiddenRanges(address, localAddresses).map((range) => range.class)
}

function checkAddress(policy: CompiledPolicy, destination: Destination, answer: string, port: number, local: readonly string[]): AddressChoice {
  const forbiddenReason = destination.kind === 'name' ? 'resolves_to_forbidden_address' : 'forbidden_address'
  // A resolver may answer a scoped link-local address (fe80::1%eth0); the scope does not change its class.
  const parsed = parseDestination(answer.split('%')[0] ?? '')
  if (parsed?.kind !== 'ip') return {ok: false, decision: {action: 'deny', reason: 'resolve_failed'}, address: answer, why: 'not an IP address'}
  const address = parsed.host

  const denial = policy.deny.find((rule) => hostMatches(rule.host, address) && (rule.ports === undefined || rule.ports.includes(port)))
  if (denial) return {ok: false, decision: {action: 'deny', reason: 'denied_by_rule', rule: denial.host}, address}

  const closed = forbiddenRanges(address, local).find((range) => !opensForbidden(policy, range, address, port))
  if (closed) return {ok: false, decision: {action: 'deny', reason: forbiddenReason}, address, addressClass: closed.class}
  return {ok: true, address, family: parsed.family}
}

/**
 * The forbidden ranges that contain `address`. The host's own addresses count
 * one by one, except those a class above already covers (127.0.0.1 is loopback).
 */
function forbiddenRanges(address: string, localAddresses: readonly string[]): ForbiddenRange[] {
  const classified = FORBIDDEN_RANGES.filter(({range}) => hostMatches(range, address))
  if (classified.length > 0) return classified
  const own = localAddresses.some((local) => parseDestination(local.split('%')[0] ?? '')?.host === address)
  return own ? [{range: address, class: 'local-interface'}] : []
}

/**
 * Whether an allow rule opens `address` on `port` despite `forbidden`: an IP or
 * CIDR rule that covers the address and lies entirely within the forbidden
 * range. `127.0.0.1` or `127.0.0.0/8` opens loopback; `10.0.0.0/8` does not
 * open the host's own 10.1.2.3, and `169.254.0.0/16` does not open the
 * metadata address inside it, because a broad rule written for a network
 * should not expose the host or the cloud's credentials by accident.
 */
function opensForbidden(policy: CompiledPolicy, forbidden: ForbiddenRange, address: string, port: number): boolean {
  return policy.allow.some(
    (rule) => rule.ports.includes(port) && hostMatches(rule.host, address) && hostMatches(forbidden.range, networkOf(rule.host)) && prefixBits(rule.host) >= prefixBits(forbidden.range),
  )
}

function networkOf(ipOrCidr: string): string {
  return ipOrCidr.split('/')[0] ?? ipOrCidr
}

/** A prefix length on the 128-bit scale host.ts matches on (IPv4 as IPv4-mapped IPv6). */
function prefixBits(ipOrCidr: string): number {
  const [network = '', prefix] = ipOrCidr.split('/')
  const ipv6 = network.includes(':')
  if (prefix === undefined) return 128
  return ipv6 ? Number(prefix) : Number(prefix) + 96
}

function interfaceAddresses(): string[] {
  return Object.values(networkInterfaces()).flatMap((addresses) => (addresses ?? []).map((info) => info.address))
}
