import {existsSync} from 'node:fs'
import {join} from 'node:path'

import {hostKind, hostMatches} from '../policy/host.js'
import type {AgentSpec, NetworkNeed} from './spec.js'

/**
 * What an agent asks for that deserves a second look before it runs: a
 * credential source outside the user's home (or the whole home), and a
 * destination on this machine, a local network or a cloud metadata service.
 * The proxy refuses loopback, link-local and metadata addresses by default,
 * but an IP or CIDR rule of the agent opens them; private networks are open
 * to any rule that names them. Shown by `plugins install|link` before a plugin
 * is added and by `agent list`; pure, so both say the same.
 */
export function agentWarnings(spec: AgentSpec, hostHome: string): string[] {
  const warnings: string[] = []
  for (const {source} of spec.credentials) {
    const problem = credentialSourceWarning(source, hostHome)
    if (problem) warnings.push(`${spec.name} copies ${source}: ${problem}`)
  }
  for (const need of spec.network) {
    const problem = destinationWarning(need.host)
    if (problem) warnings.push(`${spec.name} may reach ${destination(need)}: ${problem}`)
  }
  return warnings
}

/** The credential sources of `spec` that are not on this host (what `agent list` marks). */
export function missingCredentialSources(spec: AgentSpec, hostHome: string): string[] {
  return spec.credentials.map((mapping) => mapping.source).filter((source) => !existsSync(expandHome(source, hostHome)))
}

function credentialSourceWarning(source: string, hostHome: string): string | undefined {
  const path = source.trim()
  if (path === '~' || path === '~/' || path.replace(/\/+$/, '') === hostHome.replace(/\/+$/, '')) return 'your whole home directory'
  if (path.startsWith('~/')) return undefined
  return path === hostHome || path.startsWith(`${hostHome.replace(/\/+$/, '')}/`) ? undefined : 'outside your home directory'
}

interface AddressRange {
  range: string
  what: string
}

/** Address ranges a plugin's rule may open, most telling first; a rule covering several is named by all. */
const LOCAL_RANGES: readonly AddressRange[] = [
  {range: '169.254.169.254', what: 'cloud metadata (instance credentials)'},
  {range: 'fd00:ec2::254', what: 'cloud metadata (instance credentials)'},
  {range: '100.100.100.200', what: 'cloud metadata (instance credentials)'},
  {range: '168.63.129.16', what: 'cloud metadata (instance credentials)'},
  {range: '127.0.0.0/8', what: 'loopback (services on this machine)'},
  {range: '::1', what: 'loopback (services on this machine)'},
  {range: '0.0.0.0/8', what: 'unspecified addresses (this machine)'},
  {range: '::', what: 'unspecified addresses (this machine)'},
  {range: '169.254.0.0/16', what: 'link-local'},
  {range: 'fe80::/10', what: 'link-local'},
  {range: '10.0.0.0/8', what: 'private network'},
  {range: '172.16.0.0/12', what: 'private network'},
  {range: '192.168.0.0/16', what: 'private network'},
  {range: 'fc00::/7', what: 'private network'},
  {range: '100.64.0.0/10', what: 'shared (carrier-grade NAT) network'},
]

const LOOPBACK_NAMES = /(^|\.)localhost$|^localhost\.localdomain$|^ip6-(localhost|loopback)$/
const METADATA_NAMES = new Set(['metadata', 'metadata.google.internal', 'metadata.goog', 'instance-data', 'instance-data.ec2.internal', 'metadata.azure.com'])
const LOCAL_SUFFIXES = ['.internal', '.local', '.localdomain', '.lan', '.home.arpa', '.intranet', '.corp', '.private']

/** Why a network rule's host reaches somewhere local, or undefined for an ordinary public destination. */
function destinationWarning(host: string): string | undefined {
  const kind = hostKind(host)
  if (kind === 'ip' || kind === 'cidr') {
    const network = host.split('/')[0] ?? host
    const covered = LOCAL_RANGES.filter(({range}) => hostMatches(host, range.split('/')[0] ?? range) || hostMatches(range, network))
    const kinds = [...new Set(covered.map(({what}) => what))]
    return kinds.length > 0 ? `${kind === 'cidr' ? 'covers' : 'is'} ${kinds.join(', ')}` : undefined
  }
  const name = kind === 'wildcard' ? host.slice(2) : host
  if (LOOPBACK_NAMES.test(name)) return 'a loopback name (services on this machine)'
  if (METADATA_NAMES.has(name)) return 'a cloud metadata name (instance credentials)'
  if (!name.includes('.')) return 'a single-label name, resolved on your local network'
  if (LOCAL_SUFFIXES.some((suffix) => name.endsWith(suffix))) return 'a local network name'
  return undefined
}

function destination(need: NetworkNeed): string {
  return `${need.host}:${need.ports.join(',')}`
}

function expandHome(source: string, hostHome: string): string {
  const path = source.trim()
  if (path === '~') return hostHome
  return path.startsWith('~/') ? join(hostHome, path.slice(2)) : path
}
