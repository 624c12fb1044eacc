import type {Server} from 'node:net'
import {join} from 'node:path'

import type {Resolver} from '../egress/addresses.js'
import {type AuditEvent, AuditLog, type AuditSink} from '../egress/audit.js'
import {EgressProxy} from '../egress/proxy.js'
import type {EgressService} from '../egress/service.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import type {SandboxRecord} from '../sandbox/types.js'
import {capConnections, type ConnectionBudget, type LimitReached} from './connection-limits.js'

/** Where the proxy listens inside every sandbox (its own network namespace: no clash between sandboxes). */
export const PROXY_PORT = 3128
const PROXY_URL = `http://127.0.0.1:${PROXY_PORT}`

/** The audit log of a sandbox, next to its state. */
export function auditPath(sandboxDir: string): string {
  return join(sandboxDir, 'egress.jsonl')
}

/** How many proxy connections a sandbox may hold: its own limit, and its share of the daemon's. */
export interface EgressLimits {
  perSandbox: number
  budget: ConnectionBudget
}

/** A sandbox's egress: the proxy, the listener inside the sandbox it serves, its audit log. */
export class SandboxEgress {
  private readonly services: {service: EgressService; server?: Server}[] = []

  private constructor(
    private readonly server: Server,
    private readonly proxy: EgressProxy,
    private readonly audit: AuditLog,
    private readonly limits: EgressLimits,
    private readonly sandboxId: string,
    private readonly requireAudit: boolean,
  ) {}

  /**
   * Listens inside the sandbox and serves it; a sandbox whose daemon is gone has no listener, so egress fails closed.
   * Its connections count against `limits`.
   * `audit.onFailure` hears when the audit log stops (or starts again) being writable; with `audit.required`, connections are refused meanwhile.
   */
  static async start(
    backend: SandboxBackend,
    record: SandboxRecord,
    sandboxDir: string,
    options: {resolver?: Resolver; limits: EgressLimits; audit: {required: boolean; onFailure: (failure: string | undefined) => void}},
  ): Promise<SandboxEgress> {
    if (!record.runtime) throw new Error(`sandbox ${record.sandbox_id} has no runtime`)
    const {resolver} = options
    const audit = await AuditLog.open(auditPath(sandboxDir), options.audit.onFailure)
    let server: Server
    try {
      server = await backend.listenInside(record.runtime, PROXY_PORT)
    } catch (error) {
      await audit.close()
      throw error
    }
    // A client that half-closes after its request must still get the answer; Node's
    // server reads this option when it accepts, so it can be set on a handed-over server.
    ;(server as Server & {allowHalfOpen: boolean}).allowHalfOpen = true
    const proxy = new EgressProxy({
      sandboxId: record.sandbox_id,
      policy: record.policy,
      allowAll: record.allow_all === true,
      audit,
      requireAudit: options.audit.required,
      ...(resolver ? {resolver} : {}),
    })
    capConnections(server, options.limits, (socket) => proxy.handle(socket), (reached) => audit.record(limitEvent(record.sandbox_id, reached)))
    return new SandboxEgress(server, proxy, audit, options.limits, record.sandbox_id, options.audit.required)
  }

  /** Why the audit log cannot be written now, or undefined. */
  auditFailure(): string | undefined {
    return this.audit.failure()
  }

  /** Why its services must refuse to send anything now (egress.audit_failure: deny, and the audit log cannot be written), or undefined. */
  async auditRefusal(): Promise<string | undefined> {
    return this.requireAudit ? this.audit.unavailable() : undefined
  }

  /** Where this sandbox's egress attempts are recorded; its services record theirs there too. */
  get auditSink(): AuditSink {
    return this.audit
  }

  /**
   * Adds a service to this sandbox's egress: its listener on the sandbox's
   * loopback (made inside the sandbox like the proxy's, its connections
   * capped like the proxy's), the tunnels it takes over, and its variables for
   * the processes started from now on.
   */
  async addService(backend: SandboxBackend, runtime: Record<string, unknown>, service: EgressService): Promise<void> {
    let server: Server | undefined
    if (service.port !== undefined && service.handle !== undefined) {
      const handle = service.handle.bind(service)
      server = await backend.listenInside(runtime, service.port)
      ;(server as Server & {allowHalfOpen: boolean}).allowHalfOpen = true
      capConnections(server, this.limits, handle, (reached) => this.audit.record(limitEvent(this.sandboxId, reached)))
    }
    if (service.interceptor) this.proxy.interceptWith(service.interceptor)
    this.services.push({service, ...(server && {server})})
  }

  /** The variables the services give every process in the sandbox. */
  env(): Record<string, string> {
    return Object.assign({}, ...this.services.map(({service}) => service.env())) as Record<string, string>
  }

  async close(): Promise<void> {
    this.server.close()
    for (const {server} of this.services) server?.close()
    await this.proxy.close()
    for (const {service} of this.services.splice(0)) await service.close()
    await this.audit.close()
  }
}

/** The audit line for connections turned away at a limit (one per burst, see capConnections). */
function limitEvent(sandboxId: string, {limit, max}: LimitReached): AuditEvent {
  const which = limit === 'sandbox' ? `this sandbox's limit of ${max} open connections (egress.max_connections_per_sandbox)` : `the daemon's limit of ${max} open connections across sandboxes`
  return {
    time: new Date().toISOString(),
    sandbox_id: sandboxId,
    host: '',
    port: 0,
    resolved_ip: null,
    action: 'deny',
    reason: 'connection_limit',
    error: `${which} is reached: further connections are closed at once`,
    bytes_up: 0,
    bytes_down: 0,
    duration_ms: 0,
    protocol: 'http',
  }
}

/**
 * What every process in a sandbox is told about the network: the proxy for
 * every protocol and tool that reads the usual variables, loopback exempt.
 */
export function proxyEnv(): Record<string, string> {
  const noProxy = 'localhost,127.0.0.1,::1'
  return {
    HTTP_PROXY: PROXY_URL,
    HTTPS_PROXY: PROXY_URL,
    ALL_PROXY: `socks5h://127.0.0.1:${PROXY_PORT}`,
    http_proxy: PROXY_URL,
    https_proxy: PROXY_URL,
    all_proxy: `socks5h://127.0.0.1:${PROXY_PORT}`,
    NO_PROXY: noProxy,
    no_proxy: noProxy,
    NODE_USE_ENV_PROXY: '1',
    npm_config_proxy: PROXY_URL,
    npm_config_https_proxy: PROXY_URL,
    GIT_CONFIG_COUNT: '1',
    GIT_CONFIG_KEY_0: 'http.proxy',
    GIT_CONFIG_VALUE_0: PROXY_URL,
  }
}

const CA_VARIABLES = ['NODE_EXTRA_CA_CERTS', 'SSL_CERT_FILE', 'SSL_CERT_DIR', 'REQUESTS_CA_BUNDLE', 'GIT_SSL_CAINFO'] as const

/**
 * The host's CA settings (TLS-inspecting corporate proxies), carried in when
 * the file they name is one the sandbox sees: the host's /etc, /usr or /opt.
 */
export function caEnv(env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const visible = /^\/(etc|usr|opt)\//
  const carried: Record<string, string> = {}
  for (const name of CA_VARIABLES) {
    const value = env[name]
    if (value && visible.test(value) && !value.split('/').includes('..')) carried[name] = value
  }
  return carried
}
