import {Args} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {importThroughDaemon, openImportSource} from '../../images/client.js'
import {renderPulled} from '../../images/render.js'
import type {CachedImage} from '../../images/store.js'

export default class ImageImport extends DaemonCommand {
  static override summary = 'Import an image from a root filesystem tarball or an OCI layout directory'
  static override description = `A tarball (plain, gzip or zstd; - reads stdin) becomes a one-layer image for this host's platform, unpacked with the same rules as a pulled one. A directory must be an OCI image layout (oci-layout, index.json, blobs/), as skopeo copy … oci:DIR writes it; its blobs are verified against their digests. The image is named <ref> (repository:tag).`
  static override examples = [
    '<%= config.bin %> image import local/rootfs:1 rootfs.tar.gz',
    'tar -C rootfs -cf - . | <%= config.bin %> image import local/rootfs:2 -',
    '<%= config.bin %> image import local/app:1 ./oci-dir',
  ]
  static override enableJsonFlag = true
  static override args = {
    ref: Args.string({required: true, description: 'Name for the image: repository:tag'}),
    source: Args.string({default: '-', description: 'rootfs.tar[.gz|.zst], an OCI layout directory, or - for stdin'}),
  }

  async run(): Promise<CachedImage> {
    const {args, flags} = await this.parse(ImageImport)
    const {format, body} = await openImportSource(args.source, process.stdin)
    const image = await importThroughDaemon(await this.daemon(flags.host), args.ref, format, body)
    this.log(renderPulled({status: 'imported', ref: args.ref, image}))
    return image
  }
}
