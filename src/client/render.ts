import type {PublicSandbox} from './client.js'

/** `sandbox ls`: one aligned row per sandbox. */
export function renderSandboxTable(sandboxes: readonly PublicSandbox[]): string {
  const rows = [['ID', 'STATUS', 'BACKEND', 'POLICY', 'CREATED']]
  for (const sandbox of sandboxes) {
    rows.push([sandbox.sandbox_id, sandbox.status, sandbox.backend, sandbox.policy_hash.slice(0, 12), sandbox.created_at])
  }
  const widths = rows[0]!.map((_cell, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n')
}

/** `sandbox inspect`: labelled lines. */
export function renderSandbox(sandbox: PublicSandbox): string {
  const lines = [
    ['sandbox', sandbox.sandbox_id],
    ['status', sandbox.failure ? `${sandbox.status}: ${sandbox.failure}` : sandbox.status],
    ['backend', sandbox.backend],
    ['policy', sandbox.policy_hash],
    ['network', describeNetwork(sandbox)],
    ['workspace', sandbox.workspace_source ?? '(empty)'],
    ['created', sandbox.created_at],
    ['updated', sandbox.updated_at],
  ]
  return lines.map(([label, value]) => `${`${label}:`.padEnd(11)}${value}`).join('\n')
}

function describeNetwork(sandbox: PublicSandbox): string {
  const allowed = sandbox.policy.allow.map((rule) => `${rule.host}:${rule.ports.join(',')}`)
  return allowed.length === 0 ? 'none (deny all)' : `deny by default; allow ${allowed.join(' ')}`
}
