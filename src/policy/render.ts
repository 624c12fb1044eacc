import {type NeededCapability, neededCapabilities} from '../sandbox/capabilities.js'
import {formatByteSize} from './byte-size.js'
import {type AllowRule, type CompiledPolicy, type DenyRule, NETWORK_STAGES, type StageBlock} from './schema.js'

/** Capabilities every backend has; the rest are worth naming, since a backend without them refuses the policy. */
const BASELINE = new Set(['network.default_deny', 'network.allowlist_egress'])

/**
 * A compiled policy as `policy validate` shows it:
 *
 *     image:   host root filesystem (no sandbox.image.ref)
 *     network: deny by default
 *     allow:
 *       api.github.com      443      # git over https
 *     deny:
 *       169.254.169.254     all ports
 *     policy hash: 5b1f…
 *
 * with a section for each of the Go cleanroom's later keys the policy sets
 * (resources, docker, stages, run before, repository, expose) and a `needs:`
 * line naming the capabilities a backend must have to run it.
 */
export function renderPolicy(policy: CompiledPolicy): string {
  const stageRules = Object.values(policy.network_stages ?? {}).flatMap((stage) => stage.allow)
  const rules = [...policy.allow, ...policy.deny, ...stageRules]
  const width = Math.max(0, ...rules.map((rule) => rule.host.length))
  const portsWidth = Math.max(0, ...rules.map((rule) => portsText(rule).length))
  const ruleLine = (rule: AllowRule | DenyRule, indent = '  '): string => {
    const line = `${indent}${rule.host.padEnd(width)}  ${portsText(rule).padEnd(portsWidth)}`
    return (rule.reason === undefined ? line : `${line}  # ${rule.reason}`).trimEnd()
  }
  const extra = neededCapabilities(policy).filter((need) => !BASELINE.has(need.capability))
  return [
    `image:   ${policy.image_ref ?? 'host root filesystem (no sandbox.image.ref)'}`,
    `network: ${policy.network_default} by default`,
    policy.allow.length === 0 ? 'allow:   (none)' : 'allow:',
    ...policy.allow.map((rule) => ruleLine(rule)),
    policy.deny.length === 0 ? 'deny:    (none)' : 'deny:',
    ...policy.deny.map((rule) => ruleLine(rule)),
    ...networkStageLines(policy, (rule) => ruleLine(rule, '    ')),
    ...goKeyLines(policy),
    ...needsLines(extra),
    ...(policy.credentials ? [`credentials: ${policy.credentials.join(', ')} (requested; the runtime config's credentials.grant decides)`] : []),
    `policy hash: ${policy.hash}`,
  ].join('\n')
}

/** The capabilities beyond the baseline, each with the keys that need it. */
function needsLines(needs: readonly NeededCapability[]): string[] {
  if (needs.length === 0) return []
  const width = Math.max(...needs.map((need) => need.capability.length))
  return [
    'needs (a backend without one of these refuses the policy at launch; cleanroom doctor shows what yours has):',
    ...needs.map((need) => `  ${need.capability.padEnd(width)}  ${need.keys.join(', ')}`),
  ]
}

function networkStageLines(policy: CompiledPolicy, ruleLine: (rule: AllowRule) => string): string[] {
  const stages = policy.network_stages
  if (stages === undefined) return []
  const lines = ['network stages (each stage reaches only its own allow list):']
  for (const stage of NETWORK_STAGES) {
    const rules = stages[stage]?.allow
    if (rules === undefined) lines.push(`  ${stage}: (not declared: no egress)`)
    else if (rules.length === 0) lines.push(`  ${stage}: (none)`)
    else lines.push(`  ${stage}:`, ...rules.map(ruleLine))
  }
  return lines
}

function goKeyLines(policy: CompiledPolicy): string[] {
  const lines: string[] = []
  const {resources, services, dependencies, run, repository, expose} = policy
  if (resources) {
    const parts = [
      resources.vcpus !== undefined && `${resources.vcpus} vCPU${resources.vcpus === 1 ? '' : 's'}`,
      resources.memory_bytes !== undefined && `${formatByteSize(resources.memory_bytes)} memory`,
      resources.disk_bytes !== undefined && `${formatByteSize(resources.disk_bytes)} disk`,
    ].filter(Boolean)
    lines.push(`resources: at least ${parts.join(', ')}`)
  }
  if (services?.docker) lines.push(`docker:  ${services.docker.required ? 'required' : 'not required'}`)
  if (dependencies) lines.push(`dependencies${dependencies.reuse ? ` (reuse: ${dependencies.reuse})` : ''}:`, ...dependencies.blocks.flatMap(blockLines))
  if (services?.blocks) lines.push('services:', ...services.blocks.flatMap(blockLines))
  if (run) lines.push(labelled('run before:', commandText(run.before)))
  if (repository) {
    lines.push(
      repository.enabled
        ? `repository: checkout of ${repository.remote} at ${repository.path}, submodules ${repository.submodules ? 'on' : 'off'}`
        : 'repository: none (not checked out)',
    )
  }
  if (expose) {
    lines.push(`expose https:${expose.https.base ? ` base ${expose.https.base}` : ''}`)
    for (const route of expose.https.routes) lines.push(`  port ${route.port}: ${route.hosts.join(', ')}`)
  }
  return lines
}

function blockLines(block: StageBlock): string[] {
  const outputs = [...(block.outputs.dirs ?? []).map((dir) => `${dir}/`), ...(block.outputs.files ?? [])]
  return [
    labelled(`  ${block.name}:`, commandText(block.command)),
    `    inputs:  ${block.inputs.files.join(', ')}`,
    ...(block.env ? [`    env:     ${Object.entries(block.env).map(([name, value]) => `${name}=${value}`).join(', ')}`] : []),
    `    outputs: ${outputs.join(', ')}`,
  ]
}

/** `label command`, or the label alone with a multi-line command on the lines below. */
function labelled(label: string, command: string): string {
  return command.startsWith('\n') ? `${label}${command}` : `${label} ${command}`
}

/** A command as written: the script of `sh -lc <script>`, else the argv; a multi-line script on indented lines. */
function commandText(argv: readonly string[]): string {
  const text = argv.length === 3 && argv[0] === 'sh' && argv[1] === '-lc' ? argv[2]! : argv.map((arg) => (/^[\w./:=@%+-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'"'"'`)}'`)).join(' ')
  return text.includes('\n') ? `\n${text.split('\n').map((line) => `      ${line}`).join('\n')}` : text
}

function portsText(rule: AllowRule | DenyRule): string {
  return rule.ports ? rule.ports.join(', ') : 'all ports'
}
