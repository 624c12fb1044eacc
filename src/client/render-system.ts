import type {DiskUsageReport, PruneReport} from '../daemon/system/index.js'
import type {PruneItem} from '../daemon/system/plan.js'
import {formatByteSize} from '../util/byte-size.js'

/** `system df`: the totals by type, then each sandbox, cache and log. */
export function renderDiskUsage(report: DiskUsageReport): string {
  const lines = [table([['TYPE', 'COUNT', 'SIZE', 'RECLAIMABLE'], ...report.totals.map((total) => [total.type, String(total.count), formatByteSize(total.bytes), formatByteSize(total.reclaimable_bytes)])])]
  if (report.sandboxes.length > 0) {
    const rows = report.sandboxes.map((sandbox) => [sandbox.sandbox_id, sandbox.status, formatByteSize(sandbox.bytes), sandbox.last_used_at, sandbox.in_use ? 'yes' : 'no'])
    lines.push('', table([['SANDBOX', 'STATUS', 'SIZE', 'LAST USED', 'IN USE'], ...rows]))
  }
  if (report.caches.length > 0) {
    const rows = report.caches.map((cache) => [cache.kind, cache.sandbox_id ?? '(host)', cache.holds ? `${cache.path} (${cache.holds})` : cache.path, formatByteSize(cache.bytes), cache.last_used_at])
    lines.push('', table([['CACHE', 'SANDBOX', 'PATH', 'SIZE', 'LAST USED'], ...rows]))
  }
  if (report.logs.length > 0) {
    lines.push('', table([['LOG', 'SIZE', 'MODIFIED'], ...report.logs.map((log) => [log.path, formatByteSize(log.bytes), log.modified_at])]))
  }
  lines.push('', 'RECLAIMABLE: what "cleanroom system prune" (unused for 7 days, without --all) would free.')
  return lines.join('\n')
}

/** `system prune`: one line per item removed (or, with --dry-run, that would be), kept with why, or failed. */
export function renderPrune(report: PruneReport): string {
  const verb = report.dry_run ? 'would remove' : 'removed'
  const lines = [
    ...report.removed.map((item) => `${verb} ${describe(item)}`),
    ...report.failed.map((item) => `could not remove ${describe(item)}: ${item.error}`),
    ...report.kept.map((item) => `kept ${describe(item)}: ${item.reason}`),
  ]
  lines.push(`${report.dry_run ? 'Total reclaimable' : 'Total reclaimed'}: ${formatByteSize(report.reclaimed_bytes)}`)
  return lines.join('\n')
}

function describe(item: PruneItem): string {
  switch (item.type) {
    case 'sandbox': {
      return `sandbox ${item.sandbox_id} (${item.status}, ${formatByteSize(item.bytes)})`
    }
    case 'cache': {
      return `${item.kind} cache ${item.path}${item.sandbox_id === null ? '' : ` in ${item.sandbox_id}`} (${formatByteSize(item.bytes)})`
    }
    case 'log': {
      return `log ${item.path} (${formatByteSize(item.bytes)})`
    }
  }
}

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_cell, column) => Math.max(...rows.map((row) => row[column]!.length)))
  return rows.map((row) => row.map((cell, column) => (column === row.length - 1 ? cell : cell.padEnd(widths[column]!))).join('  ')).join('\n')
}
