import type {AllowRule, CompiledPolicy, DenyRule} from './schema.js'

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
 */
export function renderPolicy(policy: CompiledPolicy): string {
  const rules = [...policy.allow, ...policy.deny]
  const width = Math.max(0, ...rules.map((rule) => rule.host.length))
  const portsWidth = Math.max(0, ...rules.map((rule) => portsText(rule).length))
  const ruleLine = (rule: AllowRule | DenyRule): string => {
    const line = `  ${rule.host.padEnd(width)}  ${portsText(rule).padEnd(portsWidth)}`
    return (rule.reason === undefined ? line : `${line}  # ${rule.reason}`).trimEnd()
  }
  return [
    `image:   ${policy.image_ref ?? 'host root filesystem (no sandbox.image.ref)'}`,
    `network: ${policy.network_default} by default`,
    policy.allow.length === 0 ? 'allow:   (none)' : 'allow:',
    ...policy.allow.map(ruleLine),
    policy.deny.length === 0 ? 'deny:    (none)' : 'deny:',
    ...policy.deny.map(ruleLine),
    ...(policy.credentials ? [`credentials: ${policy.credentials.join(', ')} (requested; the runtime config's credentials.grant decides)`] : []),
    `policy hash: ${policy.hash}`,
  ].join('\n')
}

function portsText(rule: AllowRule | DenyRule): string {
  return rule.ports ? rule.ports.join(', ') : 'all ports'
}
