import {expect} from 'chai'
import {readFile} from 'node:fs/promises'
import {setTimeout as sleep} from 'node:timers/promises'

import type {DaemonClient} from '../../src/client/client.js'
import type {AuditEvent} from '../../src/egress/audit.js'
import {parseResponse} from '../egress/fixtures.js'
export {leftoverSandboxes, sandboxesOf} from '../helpers/daemon.js'

/** Where the probe script is inside every sandbox (the suite copies it into the workspace). */
export const PROBE = '/workspace/sandbox-probe.mjs'

/** What sandbox-probe.mjs reports; which fields are set depends on the mode. */
export interface ProbeResult {
  connected?: boolean
  error?: string
  timedOut?: boolean
  received?: string
  /** SOCKS5: the method the proxy chose, and its reply code. */
  method?: number
  reply?: number | null
  /** UDP: the outcome of the first and (connected socket) second send. */
  sent?: string
  second?: string
  /** UDP: errors the socket reported afterwards (ICMP port unreachable is ECONNREFUSED). */
  errors?: string[]
  answers?: unknown[]
  /** CONNECT + TLS: the proxy's answer to the CONNECT. */
  connect?: string
}

export interface Probe {
  mode: 'connectTls' | 'dns' | 'lookup' | 'proxy' | 'socks' | 'tcp' | 'udp' | 'unix'
  args: Record<string, unknown>
}

/** A proxy answer as a program in the sandbox sees it. */
export interface ProxyAnswer {
  status: number
  reason: string | undefined
  body: string
}

export const connectHead = (authority: string): string => `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`
export const getHead = (target: string, host?: string): string => `GET ${target} HTTP/1.1\r\n${host === undefined ? '' : `Host: ${host}\r\n`}Connection: close\r\n\r\n`

/** `host:port`, an IPv6 address in brackets. */
export const authority = (host: string, port: number): string => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`)

/** The probes that speak to the sandbox's proxy. */
export const via = {
  connect: (target: string): Probe => ({mode: 'proxy', args: {steps: [{send: connectHead(target)}]}}),
  get: (target: string, host?: string): Probe => ({mode: 'proxy', args: {steps: [{send: getHead(target, host)}]}}),
  raw: (text: string): Probe => ({mode: 'proxy', args: {steps: [{send: text}]}}),
  /** CONNECT, then `inner` through the tunnel once it is established. */
  tunnel: (target: string, inner: string): Probe => ({mode: 'proxy', args: {steps: [{send: connectHead(target)}, {until: '\r\n\r\n'}, {send: inner}]}}),
  socks: (type: 'domain' | 'ipv4' | 'ipv6', host: string, port: number, send?: string): Probe => ({mode: 'socks', args: {type, host, port, ...(send !== undefined && {send})}}),
}

/** A plain TCP connection from the sandbox, ignoring every proxy setting. */
export const direct = (host: string, port: number, send = 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'): Probe => ({mode: 'tcp', args: {host, port, send}})

/** The proxy's answer in a probe's bytes (the first response when a tunnel carried a second). */
export function proxyAnswer(result: ProbeResult): ProxyAnswer {
  const {status, headers, body} = parseResponse(result.received ?? '')
  return {status, reason: headers.get('x-cleanroom-reason'), body}
}

/** A refusal with `status`, `X-Cleanroom-Reason: reason` and a body starting with the reason. */
export function expectRefusal(result: ProbeResult, status: number, reason: string, label: string): ProxyAnswer {
  const answer = proxyAnswer(result)
  expect({status: answer.status, reason: answer.reason}, `${label}: ${result.received ?? JSON.stringify(result)}`).to.deep.equal({status, reason})
  expect(answer.body, label).to.match(new RegExp(`^${reason}: `))
  return answer
}

/** A sandbox under test, reached through whichever daemon currently runs (the suite restarts it). */
export class SandboxUnderTest {
  /** How many audit lines there were when the current test began. */
  private mark = 0

  constructor(
    private readonly client: () => DaemonClient,
    readonly id: string,
  ) {}

  async sh(script: string, env: Record<string, string> = {}): Promise<{exit_code: number; stdout: string; stderr: string}> {
    return this.client().run(this.id, {argv: ['sh', '-c', script], env})
  }

  /** Runs probes in one node process in the sandbox; `clearEnv` runs it with an empty environment (no proxy variables). */
  async probe(probes: Probe[], options: {clearEnv?: boolean} = {}): Promise<ProbeResult[]> {
    const json = JSON.stringify({probes})
    const argv = options.clearEnv ? ['env', '-i', '/usr/bin/node', PROBE, 'batch', json] : ['node', PROBE, 'batch', json]
    const result = await this.client().run(this.id, {argv, env: {}})
    if (result.exit_code !== 0) throw new Error(`the probe failed in the sandbox (exit ${result.exit_code}): ${result.stderr}`)
    return JSON.parse(result.stdout) as ProbeResult[]
  }

  async probeOne(probe: Probe, options: {clearEnv?: boolean} = {}): Promise<ProbeResult> {
    const [result] = await this.probe([probe], options)
    return result!
  }

  /** Whether `program` is on the sandbox's PATH: optional tools add probes, never replace the node ones. */
  async has(program: string): Promise<boolean> {
    return (await this.sh(`command -v ${program}`)).exit_code === 0
  }

  async audit(): Promise<AuditEvent[]> {
    const events: AuditEvent[] = []
    for await (const event of this.client().egressEvents(this.id, false)) events.push(event)
    return events
  }

  /** Remembers where the audit log ends: `expectAudit` and `auditSinceMark` look after it. */
  async markAudit(): Promise<void> {
    this.mark = (await this.audit()).length
  }

  async auditSinceMark(): Promise<AuditEvent[]> {
    return (await this.audit()).slice(this.mark)
  }

  /**
   * Waits (up to 3 s: lines are appended asynchronously) until each of `expected`
   * matches a distinct audit event since the mark, and returns those events.
   */
  async expectAudit(expected: Array<Partial<AuditEvent>>): Promise<AuditEvent[]> {
    const deadline = Date.now() + 3000
    for (;;) {
      const events = await this.auditSinceMark()
      const unmatched = [...events]
      const found: AuditEvent[] = []
      const missing = expected.filter((want) => {
        const index = unmatched.findIndex((event) => Object.entries(want).every(([key, value]) => event[key as keyof AuditEvent] === value))
        if (index === -1) return true
        found.push(...unmatched.splice(index, 1))
        return false
      })
      if (missing.length === 0) return found
      if (Date.now() > deadline) {
        expect.fail(`audit log of ${this.id} has no line for ${JSON.stringify(missing)}; it has:\n${events.map((event) => JSON.stringify(event)).join('\n')}`)
      }
      await sleep(50)
    }
  }
}

/** Polls `condition` every 50 ms for up to `ms`. */
export async function until(condition: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await condition())) {
    if (Date.now() > deadline) expect.fail(`timed out after ${ms} ms waiting for ${what}`)
    await sleep(50)
  }
}

/** The nameservers the host itself uses (its /etc/resolv.conf). */
export async function hostNameservers(): Promise<string[]> {
  const text = await readFile('/etc/resolv.conf', 'utf8').catch(() => '')
  return [...text.matchAll(/^\s*nameserver\s+(\S+)/gm)].map((match) => match[1]!.split('%')[0]!)
}
