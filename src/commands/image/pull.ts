import {Args, Flags} from '@oclif/core'

import {DaemonCommand} from '../../client/command.js'
import {loadRuntimeConfig} from '../../config/load.js'
import {registryAccess} from '../../images/access.js'
import {pullThroughDaemon} from '../../images/client.js'
import type {PullResult} from '../../images/pull.js'
import {parseImageReference} from '../../images/reference.js'
import {PullProgress, renderPulled} from '../../images/render.js'

export default class ImagePull extends DaemonCommand {
  static override summary = 'Pull an image from an OCI or Docker registry into the cache'
  static override description = `Resolves the tag (or takes the digest), picks this host's platform from a multi-platform image, downloads each layer once, verifying every digest and size as it streams, and unpacks the root filesystem into the cache, where sandboxes will share it. A digest already in the cache is not downloaded again. Credentials and plain HTTP come from registries: in the runtime config (docs/images.md). Progress goes to stderr.`
  static override examples = [
    '<%= config.bin %> image pull ghcr.io/acme/base:1.2',
    '<%= config.bin %> image pull ghcr.io/acme/base@sha256:0123…',
    '<%= config.bin %> image pull 127.0.0.1:5000/busybox:latest --json',
  ]
  static override enableJsonFlag = true
  static override args = {ref: Args.string({required: true, description: 'registry/repository:tag or registry/repository@sha256:<digest>'})}
  static override flags = {
    platform: Flags.string({summary: "Platform to pull from a multi-platform image (default: this host's)", helpValue: 'os/arch[/variant]'}),
  }

  async run(): Promise<PullResult> {
    const {args, flags} = await this.parse(ImagePull)
    const {config} = await loadRuntimeConfig()
    const access = registryAccess(config.registries, parseImageReference(args.ref).registry)
    const progress = new PullProgress(process.stderr, process.stderr.isTTY === true)
    const result = await pullThroughDaemon(await this.daemon(flags.host), args.ref, access, (event) => progress.update(event), flags.platform)
    this.log(renderPulled(result))
    return result
  }
}
