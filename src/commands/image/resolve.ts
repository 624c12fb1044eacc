import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {loadRuntimeConfig} from '../../config/load.js'
import {type ResolvedImage, resolveImage} from '../../images/resolve.js'

export default class ImageResolve extends BaseCommand {
  static override summary = 'Print the digest-pinned reference a tag names now'
  static override description = 'Asks the registry (directly, no daemon) which manifest the tag names and prints registry/repository@sha256:…, ready for sandbox.image.ref. For a multi-platform image it is the index digest, which holds for every platform.'
  static override examples = ['<%= config.bin %> image resolve ghcr.io/acme/base:1.2']
  static override enableJsonFlag = true
  static override args = {ref: Args.string({required: true, description: 'registry/repository:tag'})}

  async run(): Promise<ResolvedImage> {
    const {args} = await this.parse(ImageResolve)
    const {config} = await loadRuntimeConfig()
    const resolved = await resolveImage(args.ref, config.registries)
    this.log(resolved.ref)
    return resolved
  }
}
