import type {AuditEvent} from '../egress/audit.js'
import {describeResources} from '../sandbox/resources.js'
import {visibleName} from '../util/visible.js'
import type {PublicSandbox} from './client.js'

/** `sandbox ls`: one aligned row per sandbox. */
export function renderSandboxTable(sandboxes: readonly PublicSandbox[]): string {
  const rows = [['ID', 'STATUS', 'BACKEND', 'POLICY', 'CREATED']]
  for (const sandbox of sandboxes) {
    rows.push([sandbox.sandbox_id, sandbox.status, sandbox.backend, `${sandbox.policy_hash.slice(0, 12)}${sandbox.allow_all ? ' ALLOW-ALL' : ''}`, sandbox.created_at])
  }
  const widths = rows[0]!.map((_cell, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n')
}

/** `sandbox inspect`: labelled lines. */
export function renderSandbox(sandbox: PublicSandbox): string {
  const lines = [
    ['sandbox', sandbox.sandbox_id],
    ['status', sandbox.failure ? `${sandbox.status}: ${visibleName(sandbox.failure)}` : sandbox.status],
    ['backend', sandbox.backend],
    ['image', describeImage(sandbox)],
    ['policy', sandbox.allow_all ? `${sandbox.policy_hash} (ALLOW ALL over policy ${sandbox.policy.hash})` : sandbox.policy_hash],
    ['network', describeNetwork(sandbox)],
    ...(sandbox.egress ? [['egress', `${sandbox.egress.allowed} allowed, ${sandbox.egress.denied} denied (cleanroom sandbox logs ${sandbox.sandbox_id} --egress)`]] : []),
    ...(sandbox.egress?.listen_error === undefined ? [] : [['proxy', `not listening, connections out are refused; retrying: ${sandbox.egress.listen_error}`]]),
    ...(sandbox.egress?.audit_error === undefined ? [] : [['audit', `the egress audit log cannot be written: ${sandbox.egress.audit_error}`]]),
    ...(sandbox.ephemeral ? [['lifetime', 'for one command: removed when it ends or its client goes away']] : []),
    ...(sandbox.resources === undefined ? [] : [['limits', sandbox.resources === null ? 'none: this daemon cannot set them (cleanroom doctor says why)' : describeResources(sandbox.resources)]]),
    ['workspace', sandbox.workspace_source ?? '(empty)'],
    ...(sandbox.agent_package ? [['agent', `${sandbox.agent_package.package} ${sandbox.agent_package.version} at /cleanroom/agent, read-only (agent cache entry ${sandbox.agent_package.entry.slice(0, 12)})`]] : []),
    ['created', sandbox.created_at],
    ['updated', sandbox.updated_at],
  ]
  return lines.map(([label, value]) => `${`${label}:`.padEnd(11)}${value}`).join('\n')
}

function describeImage(sandbox: PublicSandbox): string {
  if (sandbox.image_ref === undefined) return "none: the host's root filesystem, read-only"
  return `${sandbox.image_ref}${sandbox.image_id === undefined ? '' : ` (image id ${sandbox.image_id})`}`
}

function describeNetwork(sandbox: PublicSandbox): string {
  if (sandbox.allow_all) return 'ALLOW ALL (--dangerously-allow-all); deny rules and host/metadata addresses still refused'
  const allowed = sandbox.policy.allow.map((rule) => `${rule.host}:${rule.ports.join(',')}`)
  return allowed.length === 0 ? 'none (deny all)' : `deny by default; allow ${allowed.join(' ')}`
}

/** One line of `sandbox logs --egress`; the host is as the sandbox sent it when it was not valid, so it is shown terminal-safe. */
export function renderAuditEvent(event: AuditEvent): string {
  const where = `${visibleName(event.host)}:${event.port}${event.resolved_ip && event.resolved_ip !== event.host ? ` (${visibleName(event.resolved_ip)})` : ''}`
  const traffic = event.action === 'allow' ? `  up ${event.bytes_up} B, down ${event.bytes_down} B, ${event.duration_ms} ms` : ''
  return `${event.time}  ${event.action.toUpperCase().padEnd(5)}  ${where}  ${event.reason}${traffic}`
}
