import {Flags} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {renderPrune} from '../../client/render-system.js'
import type {PruneReport} from '../../daemon/system/index.js'
import {parseDuration} from '../../util/duration.js'

export default class SystemPrune extends DaemonCommand {
  static override summary = 'Free disk space: remove failed and unused sandboxes, caches and old logs'
  static override description = `Removes what has not been used for longer than --older-than (default 7d): failed sandboxes, the caches in ready sandboxes (npm's ~/.npm, ~/.cache: they are fetched again when needed), the shared agent cache's packages no sandbox has mounted, and the rotated daemon log. With --all, ready sandboxes unused that long are removed whole instead of only emptied of their caches. Never touched: a sandbox in which something runs, one used within --older-than, the live daemon log. See docs/operations.md.`
  static override examples = ['<%= config.bin %> system prune --dry-run', '<%= config.bin %> system prune', '<%= config.bin %> system prune --all --older-than 30d --json']
  static override enableJsonFlag = true
  static override flags = {
    'dry-run': Flags.boolean({summary: 'Only list what would be removed'}),
    all: Flags.boolean({summary: 'Also remove ready sandboxes unused for longer than --older-than'}),
    'older-than': Flags.string({summary: 'Only what was last used longer ago than this (s, m, h, d, w; 0 for everything)', default: '7d', helpValue: '7d'}),
  }

  async run(): Promise<PruneReport> {
    const {flags} = await this.parse(SystemPrune)
    const olderThanMs = parseDuration(flags['older-than'], '--older-than')
    const client = await this.daemon(flags.host)
    const report = await client.prune({all: flags.all, dry_run: flags['dry-run'], older_than_seconds: olderThanMs / 1000})
    this.log(renderPrune(report))
    return report
  }
}
