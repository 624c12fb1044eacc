import {BaseCommand} from '../../base-command.js'
import {policyDirFlag} from '../../policy/flags.js'
import {type LoadedPolicy, loadPolicy} from '../../policy/load.js'
import {noPolicyNotice} from '../../policy/notice.js'
import {renderPolicy} from '../../policy/render.js'
import {displayPath} from '../../util/yaml-file.js'

export default class PolicyValidate extends BaseCommand {
  static override summary = 'Check the repository policy strictly and show what it allows'
  static override description = `Finds cleanroom.yaml (else .buildkite/cleanroom.yaml) in the directory and its parents up to the git root, reports every problem with its line and column (exit 2), and shows the compiled policy with its hash. Without a policy file the built-in default applies: no network egress and the host's root filesystem.`
  static override examples = [
    '<%= config.bin %> policy validate',
    '<%= config.bin %> policy validate -c ../other-repo',
    '<%= config.bin %> policy validate --json',
  ]
  static override enableJsonFlag = true
  static override flags = {chdir: policyDirFlag}

  async run(): Promise<LoadedPolicy> {
    const {flags} = await this.parse(PolicyValidate)
    const dir = flags.chdir ?? process.cwd()
    const loaded = await loadPolicy(dir)
    if (loaded.source === null) {
      this.logToStderr(noPolicyNotice(dir))
      this.log('policy: built-in default')
    } else {
      this.log(`policy valid: ${displayPath(loaded.source)}`)
    }
    this.log(renderPolicy(loaded.policy))
    return loaded
  }
}
