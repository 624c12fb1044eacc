import {DaemonCommand} from '../../client/command.js'
import {listImages} from '../../images/client.js'
import {renderImageTable} from '../../images/render.js'
import type {CachedImage} from '../../images/store.js'

export default class ImageLs extends DaemonCommand {
  static override summary = 'List the cached images'
  static override description = 'One row per tag. --json gives every image with all its references and digests, its layers, its run settings and the path of its root filesystem.'
  static override aliases = ['image list']
  static override examples = ['<%= config.bin %> image ls', '<%= config.bin %> image ls --json | jq -r ".[].refs[]"']
  static override enableJsonFlag = true

  async run(): Promise<CachedImage[]> {
    const {flags} = await this.parse(ImageLs)
    const images = await listImages(await this.daemon(flags.host))
    this.log(images.length === 0 ? 'no cached images' : renderImageTable(images))
    return images
  }
}
