import {DaemonCommand} from '../../client/command.js'
import {renderDiskUsage} from '../../client/render-system.js'
import type {DiskUsageReport} from '../../daemon/system/index.js'

export default class SystemDf extends DaemonCommand {
  static override summary = 'Show the disk space cleanroom uses: sandboxes, caches, logs'
  static override description = `Sandboxes are their files on disk (workspace changes, home, /tmp, logs), without their caches, which are listed apart (npm's ~/.npm and ~/.cache in each ready sandbox, and each package of the shared agent cache on the host). RECLAIMABLE is what "cleanroom system prune" with its defaults would free. See docs/operations.md.`
  static override examples = ['<%= config.bin %> system df', '<%= config.bin %> system df --json']
  static override enableJsonFlag = true

  async run(): Promise<DiskUsageReport> {
    const {flags} = await this.parse(SystemDf)
    const report = await (await this.daemon(flags.host)).diskUsage()
    this.log(renderDiskUsage(report))
    return report
  }
}
