import type {EgressAuditFailureMode} from '../config/schema.js'
import type {Resolver} from '../egress/addresses.js'
import {messageOf} from '../errors/index.js'
import type {SandboxBackend} from '../sandbox/backend.js'
import type {SandboxRecord} from '../sandbox/types.js'
import {type EgressLimits, SandboxEgress} from './egress.js'
import type {Logger} from './log.js'

/** A sandbox's egress as `sandbox inspect` shows it. */
export interface EgressState {
  /** The proxy listens inside the sandbox; when it does not, every connection out is refused by the kernel. */
  listening: boolean
  /** Why it does not listen, while the daemon keeps trying. */
  listen_error?: string
  /** Why the audit log cannot be written now. */
  audit_error?: string
}

export interface EgressSupervisorOptions {
  backend: (record: SandboxRecord) => SandboxBackend
  sandboxDir: (id: string) => string
  resolver?: Resolver
  auditFailure: EgressAuditFailureMode
  /** Every sandbox's proxy connections count against its own limit and the daemon's shared budget. */
  limits: EgressLimits
  log: Logger
  /** How long to wait before trying a listener that could not be made again. */
  retryMs: number
  /** Called with each egress opened, before it is served; an error closes it (and a start fails, a retry tries again). */
  opened?: (record: SandboxRecord, egress: SandboxEgress) => Promise<void>
  /** Called when a sandbox's egress stops being served. */
  stopped?: (id: string) => void
}

interface Entry {
  egress?: SandboxEgress
  listenError?: string
  auditError?: string
  retry?: NodeJS.Timeout
  stopped: boolean
}

/**
 * The egress proxies of the daemon's sandboxes. A sandbox whose listener cannot be
 * made again after a restart (its port taken inside, a helper that failed) stays
 * ready: with no listener its connections out are refused (fail closed), and the
 * daemon logs it and tries again until it works or the sandbox goes.
 */
export class EgressSupervisor {
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly options: EgressSupervisorOptions) {}

  /** Serves the sandbox's egress; throws when the listener cannot be made (a create then fails). */
  async start(record: SandboxRecord): Promise<void> {
    const entry = this.fresh(record.sandbox_id)
    entry.egress = await this.open(record, entry)
    if (entry.stopped) await entry.egress.close()
  }

  /** Serves the sandbox's egress, or, when it cannot yet, leaves it failing closed and tries again. */
  async startOrRetry(record: SandboxRecord): Promise<void> {
    await this.attempt(record, this.fresh(record.sandbox_id))
  }

  /** The sandbox's egress while it is served. */
  get(id: string): SandboxEgress | undefined {
    return this.entries.get(id)?.egress
  }

  /** The variables the sandbox's egress services give its processes. */
  env(id: string): Record<string, string> {
    return this.get(id)?.env() ?? {}
  }

  state(id: string): EgressState {
    const entry = this.entries.get(id)
    const state: EgressState = {listening: entry?.egress !== undefined}
    if (entry?.listenError !== undefined) state.listen_error = entry.listenError
    if (entry?.auditError !== undefined) state.audit_error = entry.auditError
    return state
  }

  /** Stops serving the sandbox (removed, or its init died): its listener closes, retries stop. */
  async stop(id: string): Promise<void> {
    const entry = this.entries.get(id)
    if (!entry) return
    this.entries.delete(id)
    entry.stopped = true
    clearTimeout(entry.retry)
    this.options.stopped?.(id)
    const {egress} = entry
    entry.egress = undefined
    await egress?.close().catch((error: unknown) => this.options.log(`sandbox ${id}: closing its egress proxy: ${messageOf(error)}`))
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.entries.keys()].map((id) => this.stop(id)))
  }

  private fresh(id: string): Entry {
    const entry: Entry = {stopped: false}
    this.entries.set(id, entry)
    return entry
  }

  private async attempt(record: SandboxRecord, entry: Entry): Promise<void> {
    const id = record.sandbox_id
    try {
      const egress = await this.open(record, entry)
      if (entry.stopped) {
        await egress.close()
        return
      }
      entry.egress = egress
      if (entry.listenError !== undefined) this.options.log(`sandbox ${id}: egress proxy listening again`)
      entry.listenError = undefined
    } catch (error) {
      if (entry.stopped) return
      const why = messageOf(error)
      if (entry.listenError !== why) {
        this.options.log(`sandbox ${id}: egress proxy cannot listen (connections out are refused meanwhile), trying again every ${this.options.retryMs / 1000} s: ${why}`)
      }
      entry.listenError = why
      entry.retry = setTimeout(() => void this.attempt(record, entry), this.options.retryMs)
      entry.retry.unref()
    }
  }

  private async open(record: SandboxRecord, entry: Entry): Promise<SandboxEgress> {
    const egress = await this.listen(record, entry)
    try {
      await this.options.opened?.(record, egress)
    } catch (error) {
      await egress.close().catch(() => undefined)
      throw error
    }
    return egress
  }

  private listen(record: SandboxRecord, entry: Entry): Promise<SandboxEgress> {
    const id = record.sandbox_id
    const required = this.options.auditFailure === 'deny'
    const onFailure = (failure: string | undefined) => {
      entry.auditError = failure
      if (failure === undefined) this.options.log(`sandbox ${id}: egress audit log can be written again`)
      else {
        const consequence = required ? 'connections out are refused until it can (egress.audit_failure: deny)' : 'connections out go on unlogged (egress.audit_failure: allow)'
        this.options.log(`sandbox ${id}: egress audit log cannot be written: ${failure}; ${consequence}`)
      }
    }
    const {resolver} = this.options
    return SandboxEgress.start(this.options.backend(record), record, this.options.sandboxDir(id), {...(resolver ? {resolver} : {}), limits: this.options.limits, audit: {required, onFailure}})
  }
}
