import {connect, type NetConnectOpts, type Socket} from 'node:net'

import type {CompiledPolicy} from '../policy/schema.js'
import {chooseDialAddress, type Resolver} from './addresses.js'
import {decide, type EgressDecision, parseDestination} from './decide.js'
import {errorCode, type RefusalDetail} from './messages.js'

const CONNECT_TIMEOUT_MS = 30_000

export interface CheckedDialOptions {
  readonly policy: CompiledPolicy
  readonly allowAll?: boolean
  readonly resolver?: Resolver
  readonly localAddresses?: () => readonly string[]
}

/** A connection made, with the decision and the address dialled; or why none was. */
export type CheckedDial =
  | {readonly ok: true; readonly socket: Socket; readonly decision: EgressDecision; readonly address: string}
  | {readonly ok: false; readonly decision: EgressDecision; readonly detail: RefusalDetail; readonly address?: string}

/**
 * Opens a TCP connection to `host` on `port` for a service of a sandbox's
 * egress (the credential gateway's upstream legs), by the same rules as the
 * proxy: the policy decides by name and port, the name is resolved once, the
 * address checked and dialled. Nothing leaves for a destination the sandbox
 * itself could not reach.
 */
export async function dialChecked(host: string, port: number, options: CheckedDialOptions): Promise<CheckedDial> {
  const destination = parseDestination(host)
  const decision = decide(options.policy, host, port, {allowAll: options.allowAll})
  const shown = destination?.host ?? host
  if (decision.action === 'deny' || destination === undefined) {
    return {ok: false, decision, detail: {reason: decision.reason, host: shown, port, rule: decision.rule}}
  }
  const choice = await chooseDialAddress(options.policy, destination, port, options)
  if (!choice.ok) {
    const {address, addressClass, why} = choice
    return {ok: false, decision: choice.decision, address, detail: {reason: choice.decision.reason, rule: choice.decision.rule, host: shown, port, address, addressClass, why}}
  }
  try {
    const socket = await connectWithin(choice.address, port)
    return {ok: true, socket, decision, address: choice.address}
  } catch (error) {
    const why = errorCode(error)
    return {ok: false, decision, address: choice.address, detail: {reason: 'upstream_failed', host: shown, port, address: choice.address, why}}
  }
}

function connectWithin(address: string, port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // Bigger reads halve the per-chunk cost of relaying long streams (Node 20's typings lack the option).
    const socket = connect({host: address, port, highWaterMark: 1 << 20} as NetConnectOpts)
    socket.setNoDelay(true)
    const timer = setTimeout(() => socket.destroy(Object.assign(new Error('connect timed out'), {code: 'ETIMEDOUT'})), CONNECT_TIMEOUT_MS)
    socket.once('connect', () => {
      clearTimeout(timer)
      socket.removeListener('error', reject)
      resolve(socket)
    })
    socket.once('error', (error) => {
      clearTimeout(timer)
      reject(error)
    })
  })
}
