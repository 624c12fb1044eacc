import {performance} from 'node:perf_hooks'

import type {AuditEvent, AuditSink, CredentialReason} from '../egress/audit.js'
import type {EgressAction, EgressReason} from '../egress/decide.js'
import {refusalMessage, refusalStatus} from '../egress/messages.js'

/** One request the gateway serves, timed from its start and audited once, without any secret. */
export class GatewayRequest {
  private readonly time = new Date().toISOString()
  private readonly start = performance.now()
  private recorded = false

  constructor(
    private readonly sandboxId: string,
    private readonly sink: AuditSink,
    readonly method: string,
    /** The path without its query: a query may carry a key. */
    readonly path: string,
  ) {}

  record(fields: {
    host: string
    port: number
    address?: string | null
    action: EgressAction
    reason: CredentialReason | EgressReason
    credential?: string
    status?: number
    bytesUp?: number
    bytesDown?: number
    error?: string
  }): void {
    if (this.recorded) return
    this.recorded = true
    const event: AuditEvent = {
      time: this.time,
      sandbox_id: this.sandboxId,
      host: fields.host,
      port: fields.port,
      resolved_ip: fields.address ?? null,
      action: fields.action,
      reason: fields.reason,
      ...(fields.error !== undefined && {error: fields.error}),
      bytes_up: fields.bytesUp ?? 0,
      bytes_down: fields.bytesDown ?? 0,
      duration_ms: Math.round(performance.now() - this.start),
      protocol: 'gateway',
      ...(fields.credential !== undefined && {credential: fields.credential}),
      method: this.method,
      path: this.path,
      ...(fields.status !== undefined && {status: fields.status}),
    }
    this.sink.record(event)
  }
}

/** The path of a request target without its query, cut to a sane length for the log. */
export function auditedPath(target: string | undefined): string {
  return (target ?? '/').split('?')[0]!.slice(0, 512)
}

/** The answer to a request that is not sent on because its audit line cannot be written (egress.audit_failure: deny). */
export function unloggedRefusal(host: string, port: number, why: string): {status: number; reason: 'audit_unavailable'; refusal: string} {
  return {status: refusalStatus('audit_unavailable'), reason: 'audit_unavailable', refusal: `cleanroom credential gateway: ${refusalMessage({reason: 'audit_unavailable', host, port, why})}`}
}
