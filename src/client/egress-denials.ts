import type {AuditEvent} from '../egress/audit.js'
import {visibleName} from '../util/visible.js'
import type {DaemonClient} from './client.js'

/** The refusals a user can act on, and what to do about each. */
const ACTIONABLE: Partial<Record<AuditEvent['reason'], string>> = {
  host_not_allowed: 'not in the policy',
  port_not_allowed: 'that port is not in the policy',
  denied_by_rule: "a deny rule of the sandbox's policy",
  forbidden_address: 'a loopback, link-local or metadata address',
  resolves_to_forbidden_address: 'its name resolves to a loopback, link-local or metadata address',
}

interface Denial {
  /** `host:port`, terminal-safe. */
  destination: string
  reason: AuditEvent['reason']
}

export interface DenialWatch {
  /** Reads what the log holds by now and reports what was not reported yet; stops following. */
  finish(): Promise<void>
}

/**
 * Reports what the sandbox's egress proxy refused during an agent run, once per
 * destination, with the policy rule that would allow it: an agent that only shows
 * "502" or retries forever leaves the reason in the audit log, where nobody looks.
 * `live` (no terminal to draw over): a line as each refusal happens. Otherwise one
 * line at the end, once the agent's screen is gone. Destinations come from the
 * sandbox and are printed terminal-safe.
 */
export function watchDenials(client: DaemonClient, sandboxId: string, options: {since: Date; live: boolean; say: (line: string) => void}): DenialWatch {
  const reported = new Set<string>()
  const pending: Denial[] = []
  const take = (event: AuditEvent) => {
    const denial = actionable(event, options.since)
    if (denial === undefined || reported.has(denial.destination)) return
    reported.add(denial.destination)
    if (options.live) options.say(denialLine([denial], sandboxId))
    else pending.push(denial)
  }

  const stop = new AbortController()
  const following = options.live ? follow(client, sandboxId, stop.signal, take) : Promise.resolve()
  return {
    async finish() {
      stop.abort()
      await following
      try {
        for await (const event of client.egressEvents(sandboxId, false)) take(event)
      } catch {
        // The sandbox or the daemon went away: there is nothing more to report from.
      }
      if (pending.length > 0) options.say(denialLine(pending, sandboxId))
    },
  }
}

async function follow(client: DaemonClient, sandboxId: string, signal: AbortSignal, take: (event: AuditEvent) => void): Promise<void> {
  try {
    for await (const event of client.egressEvents(sandboxId, true, signal)) take(event)
  } catch {
    // Stopped by finish(), or the daemon went away: finish() reads the log once more either way.
  }
}

function actionable(event: AuditEvent, since: Date): Denial | undefined {
  if (event.action !== 'deny' || ACTIONABLE[event.reason] === undefined || Date.parse(event.time) < since.getTime()) return undefined
  return {destination: `${visibleName(event.host)}:${event.port}`, reason: event.reason}
}

/**
 * `the egress proxy refused chatgpt.com:443 (not in the policy); to allow it, add
 * "chatgpt.com:443" to sandbox.network.allow in cleanroom.yaml (new sandboxes) …`
 */
export function denialLine(denials: readonly Denial[], sandboxId: string): string {
  const refused = denials.map((denial) => `${denial.destination} (${ACTIONABLE[denial.reason]})`).join(', ')
  const allowable = denials.filter((denial) => denial.reason === 'host_not_allowed' || denial.reason === 'port_not_allowed')
  const fix =
    allowable.length === 0
      ? ''
      : `; to allow ${allowable.length === 1 ? 'it' : 'them'}, add ${allowable.map((denial) => `"${denial.destination}"`).join(', ')} to sandbox.network.allow in cleanroom.yaml (for new sandboxes)`
  return `the egress proxy refused ${refused}${fix}. Every attempt: cleanroom sandbox logs ${sandboxId} --egress`
}
