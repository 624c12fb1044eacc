import {Args} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {loadRuntimeConfig} from '../../config/load.js'
import {type BumpedPolicy, bumpPolicyImage, defaultBumpSource, resolveImage} from '../../images/resolve.js'
import {policyDirFlag} from '../../policy/flags.js'
import {displayPath} from '../../util/yaml-file.js'

export default class ImageBumpRef extends BaseCommand {
  static override summary = "Pin the policy's image to what a tag names now"
  static override description = `Resolves the tag (default: the repository the policy pins now, at :latest) to registry/repository@sha256:… and writes it as sandbox.image.ref of the policy found from -c DIR. Only that value changes: comments and layout stay. A policy with no image yet gets sandbox.image.ref added.`
  static override aliases = ['image set-ref']
  static override examples = ['<%= config.bin %> image bump-ref', '<%= config.bin %> image bump-ref ghcr.io/acme/base:1.3 -c ~/src/app']
  static override enableJsonFlag = true
  static override args = {ref: Args.string({description: 'registry/repository:tag to resolve'})}
  static override flags = {chdir: policyDirFlag}

  async run(): Promise<BumpedPolicy> {
    const {args, flags} = await this.parse(ImageBumpRef)
    const dir = flags.chdir ?? process.cwd()
    const {config} = await loadRuntimeConfig()
    const resolved = await resolveImage(args.ref ?? (await defaultBumpSource(dir)), config.registries)
    const bumped = await bumpPolicyImage(dir, resolved.ref)
    this.log(bumped.previous === resolved.ref ? `${displayPath(bumped.path)}: already ${resolved.ref}` : `${displayPath(bumped.path)}: sandbox.image.ref ${bumped.previous ?? '(none)'} -> ${resolved.ref}`)
    return bumped
  }
}
