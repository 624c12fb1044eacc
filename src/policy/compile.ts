import {createHash} from 'node:crypto'

import {CleanroomError} from '../errors/index.js'
import {deepFreeze} from '../util/deep-freeze.js'
import {FILE_LIMITS} from '../util/yaml-bounds.js'
import {formatPath, YamlFile, type YamlLimits} from '../util/yaml-file.js'
import {isRecord} from '../util/record.js'
import {HostPatternError, normalizeHostPattern} from './host.js'
import {ImageRefError, parsePinnedImageRef} from './image-ref.js'
import {readPolicy} from './read.js'
import {allowRule, isPort, mergeAllowRules, notAPort, sortedPorts} from './rules.js'
import {type AllowRule, type AllowRuleInput, type CompiledPolicy, POLICY_VERSION, type PolicyContent} from './schema.js'

/** The limits a policy file is parsed with (docs/policy.md, "Limits"). */
export const POLICY_FILE_LIMITS: YamlLimits = {what: 'a policy', ...FILE_LIMITS}

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
  throw invalidPolicy(file)
}

/** Compiles a policy file's bytes, `display` naming it in messages. */
export function compilePolicyBytes(display: string, bytes: Uint8Array): CompiledPolicy {
  return compilePolicy(YamlFile.fromBytes(display, bytes, POLICY_FILE_LIMITS))
}

/** policy_invalid for a file with issues: every issue a line, and all of them in details for --json. */
export function invalidPolicy(file: YamlFile): CleanroomError {
  return new CleanroomError('policy_invalid', `policy invalid:\n${file.issueLines().join('\n')}`, {
    details: {issues: file.issues.toSorted((a, b) => a.line - b.line || a.col - b.col)},
    suggestions: [`Fix the lines above in ${file.file}, then check again with: cleanroom policy validate`],
  })
}

/** Every field of a compiled policy; anything else a client sends is refused, never dropped. */
const COMPILED_KEYS = ['version', 'image_ref', 'image_digest', 'network_default', 'allow', 'deny', 'resources', 'services', 'dependencies', 'run', 'network_stages', 'repository', 'expose', 'credentials', 'hash']

/**
 * Re-validates a compiled policy that arrived from elsewhere (a client of the
 * daemon): it is turned back into a policy document and compiled again, so
 * nothing the compiler would refuse gets through, and the hash is recomputed.
 * A field this build does not know is an error, so nothing a client asked for
 * is silently left out.
 */
export function recompilePolicy(value: unknown): CompiledPolicy {
  if (!isRecord(value)) throw invalid('policy must be a JSON object: a compiled policy')
  const unknown = Object.keys(value).filter((key) => !COMPILED_KEYS.includes(key))
  if (unknown.length > 0) throw invalid(`policy.${formatPath([unknown[0]!])} is not a field of a compiled policy (expected: ${COMPILED_KEYS.join(', ')})`)
  const policy = value
  const network: Record<string, unknown> = {default: policy.network_default, allow: policy.allow, deny: policy.deny}
  const sandbox: Record<string, unknown> = {network}
  const document: Record<string, unknown> = {version: policy.version, sandbox}
  if (policy.image_ref !== undefined) sandbox.image = {ref: policy.image_ref}
  if (policy.resources !== undefined) sandbox.resources = renamed('resources', policy.resources, {vcpus: 'vcpus', memory_bytes: 'memory', disk_bytes: 'disk'})
  if (policy.services !== undefined) {
    const services = renamed('services', policy.services, {docker: 'docker', blocks: 'blocks'})
    if (services.docker !== undefined) sandbox.docker = services.docker
    if (services.blocks !== undefined) sandbox.services = services.blocks
  }
  if (policy.dependencies !== undefined) sandbox.dependencies = policy.dependencies
  if (policy.run !== undefined) sandbox.run = {before: runBefore(policy.run)}
  if (policy.repository !== undefined) document.repository = isRecord(policy.repository) ? {...policy.repository} : policy.repository
  if (policy.network_stages !== undefined) {
    const stages = renamed('network_stages', policy.network_stages, {workspace: 'workspace', dependencies: 'dependencies', services: 'services', execution: 'execution'})
    for (const stage of ['dependencies', 'services', 'execution']) if (stages[stage] !== undefined) network[stage] = stages[stage]
    if (stages.workspace !== undefined) document.repository = {...(isRecord(document.repository) ? document.repository : {}), network: stages.workspace}
  }
  if (policy.expose !== undefined) document.expose = policy.expose
  if (policy.credentials !== undefined) sandbox.credentials = policy.credentials
  const compiled = compilePolicy(new YamlFile('policy', JSON.stringify(document), POLICY_FILE_LIMITS))
  if (policy.image_digest !== undefined && policy.image_digest !== compiled.image_digest) {
    throw invalid(`policy image_digest ${String(policy.image_digest)} does not match image_ref ${compiled.image_ref ?? '(none)'}`)
  }
  return compiled
}

/** A compiled object with its keys renamed to the document's; an unknown key is an error. */
function renamed(field: string, value: unknown, names: Readonly<Record<string, string>>): Record<string, unknown> {
  if (!isRecord(value)) throw invalid(`policy.${field} must be an object`)
  const out: Record<string, unknown> = {}
  for (const [key, item] of Object.entries(value)) {
    const name = names[key]
    if (name === undefined) throw invalid(`policy.${field}.${key} is not a field of a compiled policy (expected: ${Object.keys(names).join(', ')})`)
    out[name] = item
  }
  return out
}

/** `run.before` compiles to `["sh", "-lc", command]`; only that shape goes back to a document. */
function runBefore(run: unknown): unknown {
  const before = isRecord(run) ? run.before : undefined
  if (!Array.isArray(before) || before.length !== 3 || before[0] !== 'sh' || before[1] !== '-lc' || Object.keys(run as object).length !== 1) {
    throw invalid('policy.run must be {"before": ["sh", "-lc", <command>]}')
  }
  return before[2]
}

function invalid(message: string): CleanroomError {
  return new CleanroomError('policy_invalid', message)
}

/** The policy when a repository has none: no network egress, the host's root filesystem. */
export const DEFAULT_POLICY: CompiledPolicy = sealPolicy({version: POLICY_VERSION, network_default: 'deny', allow: [], deny: []})

/**
 * `policy` with more allow rules (e.g. the hosts an agent needs) merged in and
 * the hash recomputed. Deny rules still win over them. A policy that scopes
 * egress by stage gets them in its execution stage, where agents run.
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
  if (policy.network_stages === undefined) return sealPolicy({...content, allow: mergeAllowRules([...policy.allow, ...added])})
  const execution = policy.network_stages.execution?.allow ?? []
  return sealPolicy({...content, network_stages: {...policy.network_stages, execution: {allow: mergeAllowRules([...execution, ...added])}}})
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
  const rules = (list: readonly {host: string; ports?: readonly number[]}[]) => list.map(({host, ports}) => ({host, ports}))
  const stages = policy.network_stages && Object.fromEntries(Object.entries(policy.network_stages).map(([stage, {allow}]) => [stage, {allow: rules(allow)}]))
  const granted = {
    version: policy.version,
    image_ref: policy.image_ref,
    image_digest: policy.image_digest,
    network_default: policy.network_default,
    allow: rules(policy.allow),
    deny: rules(policy.deny),
    resources: policy.resources,
    services: policy.services,
    dependencies: policy.dependencies,
    run: policy.run,
    network_stages: stages,
    repository: policy.repository,
    expose: policy.expose,
    // Requests are part of what a policy asks for; absent, the hash is what it always was.
    credentials: policy.credentials,
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
