import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {policyDirFlag} from '../../policy/flags.js'
import {renderPolicyTemplate} from '../../policy/template.js'
import {writePolicyFile} from '../../policy/write.js'
import {displayPath} from '../../util/yaml-file.js'

export default class PolicyInit extends BaseCommand {
  static override summary = 'Write a commented starter cleanroom.yaml that allows no network egress'
  static override description = `Writes cleanroom.yaml in the directory: version 1, deny by default, no allow rules, a comment on every field and example rules commented out. An existing cleanroom.yaml or .buildkite/cleanroom.yaml is kept unless --force is given.`
  static override examples = ['<%= config.bin %> policy init', '<%= config.bin %> policy init -c ../other-repo --force']
  static override enableJsonFlag = true
  static override flags = {
    chdir: policyDirFlag,
    force: Flags.boolean({summary: 'Overwrite an existing cleanroom.yaml'}),
  }

  async run(): Promise<{path: string}> {
    const {flags} = await this.parse(PolicyInit)
    const dir = flags.chdir ?? process.cwd()
    const path = await writePolicyFile(dir, renderPolicyTemplate(), flags.force)
    this.log(`policy written: ${displayPath(path)}`)
    this.log('Add allow rules for what sandboxes must reach, then check it with: cleanroom policy validate')
    return {path}
  }
}
