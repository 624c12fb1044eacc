import {describeValue, readSection, type YamlFile} from '../util/yaml-file.js'
import {isRecord, reportUnknownKeys} from '../util/record.js'
import {ImageRefError, parsePinnedImageRef, type PinnedImageRef} from './image-ref.js'
import {checkOutputOverlaps, readBlocks, type ReadBlocks} from './read-blocks.js'
import {DEFAULT_REPOSITORY_PATH, readDocker, readExpose, readNetworkStages, readRepository, readResources, readRunBefore} from './read-go-keys.js'
import {readRules, ruleBudget} from './read-rules.js'
import {allowRule, denyRule, mergeAllowRules, mergeDenyRules} from './rules.js'
import {IMAGE_KEYS, NETWORK_KEYS, POLICY_KEYS, POLICY_LIMITS, POLICY_VERSION, type PolicyContent, SANDBOX_KEYS} from './schema.js'

/**
 * Reads a policy strictly: every unknown key, wrong type and bad value is
 * reported on `file` with its line and column, and reading goes on so that one
 * run shows every problem. The result is only meaningful when `file.ok`.
 */
export function readPolicy(file: YamlFile): PolicyContent {
  const empty: PolicyContent = {version: POLICY_VERSION, network_default: 'deny', allow: [], deny: []}
  const root = file.toJS()
  if (root === undefined || root === null) {
    file.report([], 'the policy is empty: it needs at least "version: 1"')
    return empty
  }
  if (!isRecord(root)) {
    file.report([], 'the policy must be a mapping (e.g. version: 1)')
    return empty
  }
  reportUnknownKeys(file, [], root, POLICY_KEYS)
  readVersion(file, root.version)

  const budget = ruleBudget()
  const repository = readRepository(file, root.repository)
  const expose = readExpose(file, root.expose)
  const sandbox = readSection(file, ['sandbox'], root.sandbox, SANDBOX_KEYS) ?? {}
  const image = readImage(file, sandbox.image)
  const network = readSection(file, ['sandbox', 'network'], sandbox.network, NETWORK_KEYS)
  readNetworkDefault(file, network?.default)
  const allow = mergeAllowRules(readRules(file, 'allow', ['sandbox', 'network', 'allow'], network?.allow, budget).map((rule) => allowRule(rule.host, rule.ports ?? [], rule.reason)))
  const deny = mergeDenyRules(readRules(file, 'deny', ['sandbox', 'network', 'deny'], network?.deny, budget).map((rule) => denyRule(rule.host, rule.ports, rule.reason)))
  const stages = readNetworkStages(file, network, repository.network, budget)
  if (stages !== undefined && allow.length > 0) {
    file.report(['sandbox', 'network', 'allow'], 'cannot be combined with stage-local network blocks: move its rules to sandbox.network.execution.allow (and the other stages that need them)')
  }

  const workspace = repository.checkout?.enabled ? repository.checkout.path : DEFAULT_REPOSITORY_PATH
  const services = sandbox.services
  const serviceBlocks = Array.isArray(services) ? readBlocks(file, ['sandbox', 'services'], services, workspace) : undefined
  // The Go tool's first schema: sandbox.services was a mapping holding docker.
  const servicesDocker = isRecord(services) ? readSection(file, ['sandbox', 'services'], services, ['docker'])?.docker : undefined
  if (services !== undefined && services !== null && !Array.isArray(services) && !isRecord(services)) {
    file.report(['sandbox', 'services'], 'must be a list of blocks, or a mapping with docker')
  }
  const docker = readDocker(file, sandbox.docker, servicesDocker)
  const dependencies = readDependencies(file, sandbox.dependencies, workspace)
  if (dependencies?.blocks && serviceBlocks) {
    const stage = (name: string, read: ReadBlocks) => read.outputs.map((output) => ({...output, block: `${name}.${output.block}`}))
    checkOutputOverlaps(file, [...stage('dependencies', dependencies.blocks), ...stage('services', serviceBlocks)])
  }
  const resources = readResources(file, sandbox.resources)
  const run = readRunBefore(file, sandbox.run)
  const credentials = readCredentialRequests(file, sandbox.credentials)

  return {
    version: POLICY_VERSION,
    ...(image && {image_ref: image.ref, image_digest: image.digest}),
    network_default: 'deny',
    allow,
    deny,
    ...(resources && {resources}),
    ...((docker || serviceBlocks) && {services: {...(docker && {docker}), ...(serviceBlocks && {blocks: serviceBlocks.blocks})}}),
    ...(dependencies?.blocks && {dependencies: {...(dependencies.reuse && {reuse: dependencies.reuse}), blocks: dependencies.blocks.blocks}}),
    ...(run && {run}),
    ...(stages && {network_stages: stages}),
    ...(repository.checkout && {repository: repository.checkout}),
    ...(expose && {expose}),
    ...(credentials.length > 0 && {credentials}),
  }
}

/** `sandbox.credentials`: names of credential routes the repository asks for (docs/credentials.md). */
function readCredentialRequests(file: YamlFile, value: unknown): string[] {
  if (value === undefined || value === null) return []
  const path = ['sandbox', 'credentials']
  if (!Array.isArray(value)) {
    file.report(path, 'must be a list of credential route names (e.g. [github]); the runtime config grants them')
    return []
  }
  if (value.length > POLICY_LIMITS.maxCredentialRequests) {
    file.report(path, `asks for ${value.length} credential routes; at most ${POLICY_LIMITS.maxCredentialRequests}`)
    return []
  }
  const names: string[] = []
  for (const [i, name] of value.entries()) {
    if (typeof name === 'string' && name.length <= 64 && /^[a-z][a-z0-9-]*$/.test(name)) names.push(name)
    else file.report([...path, i], 'must be a route name (lower-case letters, digits and -, starting with a letter; at most 64)')
  }
  return [...new Set(names)].sort()
}

function readVersion(file: YamlFile, value: unknown): void {
  if (value === undefined) file.report(['version'], `is required: add "version: ${POLICY_VERSION}" at the top`)
  else if (value !== POLICY_VERSION) {
    file.report(['version'], `unsupported version ${describeValue(value)}: only version ${POLICY_VERSION} is supported`)
  }
}

function readImage(file: YamlFile, value: unknown): PinnedImageRef | undefined {
  const image = readSection(file, ['sandbox', 'image'], value, IMAGE_KEYS)
  if (image?.ref === undefined || image.ref === null) return undefined
  const path = ['sandbox', 'image', 'ref']
  if (typeof image.ref !== 'string') {
    file.report(path, 'must be a string: a digest-pinned image (repo/image@sha256:<digest>)')
    return undefined
  }
  try {
    return parsePinnedImageRef(image.ref)
  } catch (error) {
    if (!(error instanceof ImageRefError)) throw error
    file.report(path, error.message)
    return undefined
  }
}

/** Like the Go cleanroom: trimmed and lower-cased, empty means deny, and nothing but deny is accepted. */
function readNetworkDefault(file: YamlFile, value: unknown): void {
  if (value === undefined || value === null) return
  const mode = typeof value === 'string' ? value.trim().toLowerCase() : value
  if (mode === '' || mode === 'deny') return
  file.report(['sandbox', 'network', 'default'], `unsupported value ${describeValue(value)}: cleanroom requires deny-by-default`)
}

/** `sandbox.dependencies`: a list of blocks, or `{reuse, blocks}`. */
function readDependencies(file: YamlFile, value: unknown, workspace: string): {reuse?: 'portable'; blocks?: ReadBlocks} | undefined {
  if (value === undefined || value === null) return undefined
  if (Array.isArray(value)) return {blocks: readBlocks(file, ['sandbox', 'dependencies'], value, workspace)}
  const section = readSection(file, ['sandbox', 'dependencies'], value, ['reuse', 'blocks'])
  if (section === undefined) return undefined
  const blocks = readBlocks(file, ['sandbox', 'dependencies', 'blocks'], section.blocks, workspace)
  const reuse = section.reuse
  if (reuse === undefined || reuse === null) return {blocks}
  const mode = typeof reuse === 'string' ? reuse.trim().toLowerCase() : undefined
  if (mode === '' || mode === 'exact') return {blocks}
  if (mode !== 'portable') {
    file.report(['sandbox', 'dependencies', 'reuse'], `unsupported value ${describeValue(reuse)}: expected "portable" (or "exact", the default)`)
    return {blocks}
  }
  // Every valid block has input files, so only a stage without blocks has none to key its reuse on.
  const declared = section.blocks
  if (declared === undefined || declared === null || (Array.isArray(declared) && declared.length === 0)) {
    file.report(['sandbox', 'dependencies', 'reuse'], 'portable requires key files: blocks with inputs.files')
  }
  return {reuse: 'portable', blocks}
}
