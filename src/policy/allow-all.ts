import {createHash} from 'node:crypto'

import type {CompiledPolicy} from './schema.js'

/**
 * The policy hash a sandbox shows. Under `--dangerously-allow-all` it is not the
 * repository policy's own hash (that one stays in the record's `policy.hash`) but
 * one derived from it, so a relaxed sandbox never shows the hash of a strict one.
 */
export function sandboxPolicyHash(policy: CompiledPolicy, allowAll: boolean): string {
  if (!allowAll) return policy.hash
  return createHash('sha256').update(`cleanroom allow-all\n${policy.hash}\n`).digest('hex')
}
