import {Flags} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {pruneImages} from '../../images/client.js'
import {renderPruned} from '../../images/render.js'
import {policyImagePins} from '../../images/resolve.js'
import type {PruneResult} from '../../images/service.js'
import {policyDirFlag} from '../../policy/flags.js'

export default class ImagePrune extends DaemonCommand {
  static override summary = 'Remove the cached images no sandbox uses and no policy pins'
  static override description = `Keeps an image when a sandbox of the daemon (any but a removed one) runs on it, when the policy of one of those sandboxes pins it, or when the repository's policy (found from -c DIR, default the current directory) pins it. Everything else goes, tagged or not, with the layers nothing else uses.`
  static override examples = ['<%= config.bin %> image prune --dry-run', '<%= config.bin %> image prune -c ~/src/app']
  static override enableJsonFlag = true
  static override flags = {
    chdir: policyDirFlag,
    'dry-run': Flags.boolean({summary: 'Show what would be removed, remove nothing'}),
  }

  async run(): Promise<PruneResult> {
    const {flags} = await this.parse(ImagePrune)
    const keep = await policyImagePins(flags.chdir ?? process.cwd())
    const result = await pruneImages(await this.daemon(flags.host), keep, flags['dry-run'])
    this.log(renderPruned(result))
    return result
  }
}
