import {Args} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {removeImage} from '../../images/client.js'
import type {CachedImage} from '../../images/store.js'

export default class ImageRm extends DaemonCommand {
  static override summary = 'Remove cached images'
  static override description = 'Removes the image a reference, digest or image id names — with all its references — and the layers no other cached image uses. An image a sandbox runs on is refused, naming the sandboxes.'
  static override aliases = ['image remove']
  static override strict = false
  static override examples = ['<%= config.bin %> image rm ghcr.io/acme/base:1.2', '<%= config.bin %> image rm sha256:0123…']
  static override enableJsonFlag = true
  static override args = {image: Args.string({required: true, description: 'References, digests (sha256:…) or image ids, one or more'})}

  async run(): Promise<CachedImage[]> {
    const {argv, flags} = await this.parse(ImageRm)
    const client = await this.daemon(flags.host)
    const removed: CachedImage[] = []
    for (const selector of argv as string[]) {
      removed.push(await removeImage(client, selector))
      this.log(`removed ${selector}`)
    }
    return removed
  }
}
