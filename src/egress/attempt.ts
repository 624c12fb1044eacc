import type {Socket} from 'node:net'
import {performance} from 'node:perf_hooks'

import type {AuditEvent, EgressProtocol} from './audit.js'
import {type Destination, type EgressDecision, parseDestination} from './decide.js'
import type {Authority} from './http-head.js'
import {errorCode} from './messages.js'

const MAX_AUDITED_HOST_LENGTH = 255

/** One client connection through the proxy and what became of it. */
export class EgressAttempt {
  protocol: EgressProtocol = 'http'
  host = ''
  port = 0
  resolvedIp: string | null = null
  decision: EgressDecision | undefined
  error: string | undefined
  upstream: Socket | undefined
  /** Served by an interceptor: its own requests out are audited by it. */
  intercepted = false
  private readonly time = new Date().toISOString()
  private readonly start = performance.now()
  private recorded = false
  private readonly gone: Promise<void>

  constructor(readonly client: Socket) {
    client.on('error', (error) => {
      this.error ??= errorCode(error)
    })
    this.gone = closedOf(client)
  }

  /** Notes the destination the client named, as the proxy understands it: undefined when it is not a valid host. */
  aim({host, port}: Authority): Destination | undefined {
    const destination = parseDestination(host)
    this.host = destination?.host ?? host.slice(0, MAX_AUDITED_HOST_LENGTH)
    this.port = port
    return destination
  }

  /** `work`'s result, or undefined if the client hangs up first. */
  async unlessGone<T>(work: Promise<T>): Promise<T | undefined> {
    return Promise.race([work, this.gone.then(() => undefined)])
  }

  async closed(): Promise<void> {
    await this.gone
    if (this.upstream) await closedOf(this.upstream)
  }

  destroy(): void {
    this.client.destroy()
    this.upstream?.destroy()
  }

  /** The audit line, once: undefined when already recorded, or when the client never asked for anything. */
  auditEvent(sandboxId: string): AuditEvent | undefined {
    if (this.recorded || this.decision === undefined) return undefined
    this.recorded = true
    return {
      time: this.time,
      sandbox_id: sandboxId,
      host: this.host,
      port: this.port,
      resolved_ip: this.resolvedIp,
      action: this.decision.action,
      reason: this.decision.reason,
      ...(this.decision.rule !== undefined && {rule: this.decision.rule}),
      ...(this.error !== undefined && {error: this.error}),
      bytes_up: this.upstream?.bytesWritten ?? 0,
      bytes_down: this.upstream?.bytesRead ?? 0,
      duration_ms: Math.round(performance.now() - this.start),
      protocol: this.protocol,
      ...(this.intercepted && {intercepted: true}),
    }
  }
}

function closedOf(socket: Socket): Promise<void> {
  if (socket.closed) return Promise.resolve()
  return new Promise((resolve) => socket.once('close', () => resolve()))
}
