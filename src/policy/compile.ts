import {createHash} from 'node:crypto'

import {CleanroomError} from '../errors/index.js'
import {formatIssue, isRecord, YamlFile} from '../util/yaml-file.js'
import {HostPatternError, normalizeHostPattern} from './host.js'
import {ImageRefError, parsePinnedImageRef} from './image-ref.js'
import {readPolicy} from './read.js'
import {allowRule, isPort, mergeAllowRules, notAPort, sortedPorts} from './rules.js'
import {type AllowRule, type AllowRuleInput, type CompiledPolicy, POLICY_VERSION, type PolicyContent} from './schema.js'

/**
 * Validates a parsed `cleanroom.yaml` and compiles it to an immutable policy.
 * Throws policy_invalid listing every problem, one `file:line:col path: message` a line.
 */
export function compilePolicy(file: YamlFile): CompiledPolicy {
  // A file with YAML syntax errors is not read further: its content is not what the author meant.
  if (file.ok) {
    const content = readPolicy(file)
    if (file.ok) return sealPolicy(content)
  }
  const issues = [...file.issues].sort((a, b) => a.line - b.line || a.col - b.col)
  throw new CleanroomError('policy_invalid', `policy invalid:\n${issues.map((issue) => formatIssue(issue)).join('\n')}`, {
    details: {issues},
    suggestions: [`Fix the lines above in ${file.file}, then check again with: cleanroom policy validate`],
  })
}

/**
 * Re-validates a compiled policy that arrived from elsewhere (a client of the
 * daemon): it is turned back into a policy document and compiled again, so
 * nothing the compiler would refuse gets through, and the hash is recomputed.
 */
export function recompilePolicy(value: unknown): CompiledPolicy {
  const policy = isRecord(value) ? value : {}
  const network: Record<string, unknown> = {default: policy.network_default, allow: policy.allow, deny: policy.deny}
  const sandbox: Record<string, unknown> = {network}
  if (policy.image_ref !== undefined) sandbox.image = {ref: policy.image_ref}
  const compiled = compilePolicy(new YamlFile('policy', JSON.stringify({version: policy.version, sandbox})))
  if (policy.image_digest !== undefined && policy.image_digest !== compiled.image_digest) {
    throw new CleanroomError('policy_invalid', `policy image_digest ${String(policy.image_digest)} does not match image_ref ${compiled.image_ref ?? '(none)'}`)
  }
  return compiled
}

/** The policy when a repository has none: no network egress, the host's root filesystem. */
export const DEFAULT_POLICY: CompiledPolicy = sealPolicy({version: POLICY_VERSION, network_default: 'deny', allow: [], deny: []})

/**
 * `policy` with more allow rules (e.g. the hosts an agent needs) merged in and
 * the hash recomputed. Deny rules still win over them.
 */
export function withAdditionalAllow(policy: CompiledPolicy, rules: readonly AllowRuleInput[]): CompiledPolicy {
  const problems: string[] = []
  const added: AllowRule[] = []
  for (const [i, rule] of rules.entries()) {
    let host: string | undefined
    try {
      host = normalizeHostPattern(rule.host)
    } catch (error) {
      if (!(error instanceof HostPatternError)) throw error
      problems.push(`allow rule ${i} host: ${error.message}`)
    }
    const badPorts = rule.ports.length === 0 ? ['at least one port is required'] : rule.ports.filter((port) => !isPort(port)).map(notAPort)
    problems.push(...badPorts.map((problem) => `allow rule ${i} ports: ${problem}`))
    if (host !== undefined && badPorts.length === 0) added.push(allowRule(host, sortedPorts(rule.ports), rule.reason?.trim() || undefined))
  }
  if (problems.length > 0) throw new CleanroomError('policy_invalid', `cannot add allow rules to the policy:\n${problems.join('\n')}`)

  const {hash: _previous, ...content} = policy
  return sealPolicy({...content, allow: mergeAllowRules([...policy.allow, ...added])})
}

/**
 * `policy` running on the image `ref` instead of its own (`--image` for a new
 * sandbox), the hash recomputed. The reference must be digest-pinned, as in a policy.
 */
export function withImage(policy: CompiledPolicy, ref: string): CompiledPolicy {
  let pinned
  try {
    pinned = parsePinnedImageRef(ref)
  } catch (error) {
    if (!(error instanceof ImageRefError)) throw error
    throw new CleanroomError('image_ref_invalid', `image ${error.message}`, {suggestions: ['Resolve a tag to its digest first: cleanroom image resolve <ref>']})
  }
  const {hash: _previous, ...content} = policy
  return sealPolicy({...content, image_ref: pinned.ref, image_digest: pinned.digest})
}

/**
 * SHA-256 hex of the policy's canonical JSON: keys sorted, no whitespace, the
 * hash itself and every `reason` left out (reasons document; they grant nothing).
 */
export function policyHash(policy: PolicyContent): string {
  const granted = {
    version: policy.version,
    image_ref: policy.image_ref,
    image_digest: policy.image_digest,
    network_default: policy.network_default,
    allow: policy.allow.map(({host, ports}) => ({host, ports})),
    deny: policy.deny.map(({host, ports}) => ({host, ports})),
  }
  return createHash('sha256').update(canonicalJson(granted)).digest('hex')
}

function sealPolicy(content: PolicyContent): CompiledPolicy {
  return deepFreeze({...content, hash: policyHash(content)})
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map((item) => canonicalJson(item)).join(',')}]`
  if (isRecord(value)) {
    const fields = Object.keys(value)
      .filter((key) => value[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(value[key])}`)
    return `{${fields.join(',')}}`
  }
  return JSON.stringify(value)
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const child of Object.values(value)) deepFreeze(child)
    Object.freeze(value)
  }
  return value
}
