import {claimHostUid, releaseHostUid, RESERVED, reserveHostUid, takeReservedUid, type UidRegistryOptions, uidsWithProcesses} from './uids.js'

/** How often a waiting reservation is checked again against the machine's processes. */
export const REVERIFY_MS = 20_000
/** A reservation last checked longer ago than this (the check fell behind) is not used: the create claims as before. */
const FRESH_MS = 30_000
/** How long `refill` waits before it scans: the create that asked finishes first (its egress listener, its record, the answer). */
const REFILL_DELAY_MS = 100

/**
 * One host uid claimed ahead of the next sandbox, so that a create does not wait for
 * the scan of every process on the machine a claim needs (tens of ms, more on a
 * loaded machine). The reservation is a claim in the registry like any other, in the
 * daemon's name (sandbox id and state dir RESERVED): no other daemon hands the uid
 * out, and once the daemon is gone and nothing runs as the uid the stale-claim sweep
 * removes it. It is checked free of processes when made and every REVERIFY_MS while
 * it waits (given back and replaced if something runs as it); a create takes it only
 * if that check is recent. The caller asks for the next one (`refill`) when its sandbox
 * runs; the scan starts a moment later, so it never slows a create down.
 */
export class HostUidReserve {
  private reserved?: {uid: number; checkedAt: number}
  private making?: Promise<void>
  private timer?: NodeJS.Timeout
  private refillTimer?: NodeJS.Timeout
  private closed = false

  /** `reverifyMs`: REVERIFY_MS unless a test wants it sooner. */
  constructor(private readonly options: UidRegistryOptions & {reverifyMs?: number} = {}) {}

  /** The sandbox's host uid, claimed machine-wide and admitted to `stateDir` (claimHostUid). */
  async claim(sandboxId: string, stateDir: string): Promise<number> {
    // A reservation under way (its scan started earlier) is ready sooner than a claim made now.
    await this.making
    const reserved = this.reserved
    this.reserved = undefined
    let uid: number | undefined
    if (reserved && Date.now() - reserved.checkedAt < FRESH_MS && (await takeReservedUid(reserved.uid, sandboxId, stateDir, this.options))) uid = reserved.uid
    else if (reserved) await releaseHostUid(reserved.uid, RESERVED, this.options.registry)
    uid ??= await claimHostUid(sandboxId, stateDir, this.options)
    return uid
  }

  /** Reserves a uid for the next create, shortly, unless one is reserved or being reserved. */
  refill(): void {
    this.refillTimer ??= setTimeout(() => {
      this.refillTimer = undefined
      this.reserveNow()
    }, REFILL_DELAY_MS).unref()
  }

  private reserveNow(): void {
    if (this.closed || this.making || this.reserved) return
    this.making = reserveHostUid(this.options)
      .then(async (uid) => {
        this.reserved = {uid, checkedAt: Date.now()}
        // Closed meanwhile: nothing will take it.
        if (this.closed) await this.giveBack()
        else this.timer ??= setInterval(() => void this.check(), this.options.reverifyMs ?? REVERIFY_MS).unref()
      })
      // Without a reservation the next create claims as before, and says why if that fails too.
      .catch(() => undefined)
      .finally(() => {
        this.making = undefined
      })
  }

  /** Gives the reservation back (the daemon stops); claims go on working without one. */
  async close(): Promise<void> {
    this.closed = true
    clearInterval(this.timer)
    clearTimeout(this.refillTimer)
    this.timer = undefined
    this.refillTimer = undefined
    await this.making
    await this.giveBack()
  }

  /** The reservation is still free of processes, or is given back and replaced. */
  private async check(): Promise<void> {
    const reserved = this.reserved
    if (!reserved || this.making) return
    const busy = await uidsWithProcesses().catch(() => undefined)
    if (this.reserved !== reserved) return
    if (busy && !busy.has(reserved.uid)) {
      reserved.checkedAt = Date.now()
      return
    }
    await this.giveBack()
    this.reserveNow()
  }

  private async giveBack(): Promise<void> {
    const reserved = this.reserved
    this.reserved = undefined
    if (reserved) await releaseHostUid(reserved.uid, RESERVED, this.options.registry).catch(() => undefined)
  }
}
