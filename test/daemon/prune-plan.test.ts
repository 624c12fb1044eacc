import {expect} from 'chai'

import type {Inventory, SandboxUsage} from '../../src/daemon/system/inventory.js'
import {planPrune} from '../../src/daemon/system/plan.js'

const NOW = Date.parse('2026-11-30T12:00:00Z')
const DAY = 86_400_000
const ago = (days: number) => new Date(NOW - days * DAY).toISOString()

function sandbox(id: string, status: SandboxUsage['status'], daysIdle: number, inUse = false): SandboxUsage {
  return {sandbox_id: id, status, bytes: 1000, last_used_at: ago(daysIdle), in_use: inUse}
}

const inventory: Inventory = {
  sandboxes: [
    sandbox('cr_failed_old', 'failed', 10),
    sandbox('cr_failed_new', 'failed', 1),
    sandbox('cr_stopped', 'stopped', 10),
    sandbox('cr_idle', 'ready', 10),
    sandbox('cr_recent', 'ready', 1),
    sandbox('cr_busy', 'ready', 10, true),
    sandbox('cr_making', 'provisioning', 10, true),
  ],
  caches: [
    {kind: 'npm', sandbox_id: 'cr_idle', path: '~/.npm', bytes: 500, last_used_at: ago(10)},
    {kind: 'npm', sandbox_id: 'cr_recent', path: '~/.npm', bytes: 500, last_used_at: ago(1)},
    {kind: 'npm', sandbox_id: 'cr_busy', path: '~/.npm', bytes: 500, last_used_at: ago(10)},
    {kind: 'agents', sandbox_id: null, path: '/cache/agents', bytes: 700, last_used_at: ago(10)},
  ],
  logs: [
    {path: '/state/daemon.log', bytes: 10, modified_at: ago(10), live: true},
    {path: '/state/daemon.log.1', bytes: 20, modified_at: ago(10), live: false},
  ],
}

/** Each item of a plan as one line: what, and why kept. */
function lines(plan: ReturnType<typeof planPrune>): {remove: string[]; keep: string[]} {
  const name = (item: {type: string; sandbox_id?: string | null; path?: string; bytes: number}) =>
    `${item.type} ${item.type === 'sandbox' ? item.sandbox_id : `${item.path}${item.sandbox_id ? ` in ${item.sandbox_id}` : ''}`} ${item.bytes}`
  return {remove: plan.remove.map((item) => name(item)), keep: plan.keep.map((item) => `${name(item)}: ${item.reason}`)}
}

describe('what system prune removes', () => {
  it('by default: failed and stopped sandboxes, idle caches and rotated logs unused for longer than the cut-off; never a ready sandbox', () => {
    expect(lines(planPrune(inventory, {all: false, olderThanMs: 7 * DAY}, NOW))).to.deep.equal({
      remove: ['sandbox cr_failed_old 1000', 'sandbox cr_stopped 1000', 'cache ~/.npm in cr_idle 500', 'cache /cache/agents 700', 'log /state/daemon.log.1 20'],
      keep: [
        'sandbox cr_failed_new 1000: used within the last 7d',
        'sandbox cr_idle 1000: it is ready (removed only with --all; its caches are emptied)',
        'sandbox cr_recent 1000: used within the last 7d',
        'sandbox cr_busy 1000: it is in use',
        'sandbox cr_making 1000: it is provisioning',
        'cache ~/.npm in cr_recent 500: used within the last 7d',
        'cache ~/.npm in cr_busy 500: its sandbox is in use',
        'log /state/daemon.log 10: the daemon writes it',
      ],
    })
  })

  it('with --all: also ready sandboxes unused that long, whole (their caches counted with them), never one in use', () => {
    const plan = lines(planPrune(inventory, {all: true, olderThanMs: 7 * DAY}, NOW))
    expect(plan.remove).to.deep.equal(['sandbox cr_failed_old 1000', 'sandbox cr_stopped 1000', 'sandbox cr_idle 1500', 'cache /cache/agents 700', 'log /state/daemon.log.1 20'])
    expect(plan.keep).to.include('sandbox cr_busy 1000: it is in use')
    expect(plan.keep).to.include('sandbox cr_recent 1000: used within the last 7d')
  })

  it('with --older-than 0: everything not in use, not being made, not the live log', () => {
    const plan = lines(planPrune(inventory, {all: true, olderThanMs: 0}, NOW))
    expect(plan.keep).to.deep.equal([
      'sandbox cr_busy 1000: it is in use',
      'sandbox cr_making 1000: it is provisioning',
      'cache ~/.npm in cr_busy 500: its sandbox is in use',
      'log /state/daemon.log 10: the daemon writes it',
    ])
  })
})
