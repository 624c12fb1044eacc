import {describeValue} from '../util/describe-value.js'
import type {AllowRule, DenyRule} from './schema.js'

const MAX_PORT = 65_535

export function isPort(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 1 && value <= MAX_PORT
}

export function notAPort(value: unknown): string {
  return `${describeValue(value)} is not a port (1-${MAX_PORT})`
}

export function sortedPorts(ports: Iterable<number>): number[] {
  return [...new Set(ports)].sort((a, b) => a - b)
}

/** One rule per host (ports united, reasons joined), sorted by host. */
export function mergeAllowRules(rules: readonly AllowRule[]): AllowRule[] {
  return mergeByHost(rules, (a, b) => allowRule(a.host, sortedPorts([...a.ports, ...b.ports]), joinReasons(a.reason, b.reason)))
}

/** Like mergeAllowRules; a rule without ports (every port) absorbs the others of its host. */
export function mergeDenyRules(rules: readonly DenyRule[]): DenyRule[] {
  return mergeByHost(rules, (a, b) => {
    const ports = a.ports && b.ports ? sortedPorts([...a.ports, ...b.ports]) : undefined
    return denyRule(a.host, ports, joinReasons(a.reason, b.reason))
  })
}

export function allowRule(host: string, ports: readonly number[], reason?: string): AllowRule {
  return reason === undefined ? {host, ports} : {host, ports, reason}
}

export function denyRule(host: string, ports?: readonly number[], reason?: string): DenyRule {
  return {host, ...(ports && {ports}), ...(reason !== undefined && {reason})}
}

function mergeByHost<R extends {host: string}>(rules: readonly R[], merge: (a: R, b: R) => R): R[] {
  const byHost = new Map<string, R>()
  for (const rule of rules) {
    const seen = byHost.get(rule.host)
    byHost.set(rule.host, seen ? merge(seen, rule) : rule)
  }
  // Code-unit order, not localeCompare: the order (and so the hash) must not depend on the machine's locale.
  return [...byHost.values()].sort((a, b) => (a.host < b.host ? -1 : a.host > b.host ? 1 : 0))
}

function joinReasons(a: string | undefined, b: string | undefined): string | undefined {
  if (a === undefined || b === undefined || a === b) return a ?? b
  return a.split('; ').includes(b) ? a : `${a}; ${b}`
}
