import {BaseCommand} from '../../base-command.js'
import {CleanroomError} from '../../errors/index.js'
import {configPathFlag, resolveConfigPath} from '../../config/flags.js'
import {configCommand} from '../../config/suggest.js'
import {loadRuntimeConfig} from '../../config/load.js'

export default class ConfigValidate extends BaseCommand {
  static override summary = 'Check the runtime config strictly and report every problem with its line'
  static override examples = ['<%= config.bin %> config validate', '<%= config.bin %> config validate --path ./config.yaml']
  static override enableJsonFlag = true
  static override flags = {path: configPathFlag}

  async run(): Promise<{path: string; valid: true; default_backend: string}> {
    const {flags} = await this.parse(ConfigValidate)
    const path = resolveConfigPath(flags.path)
    const loaded = await loadRuntimeConfig(path)
    if (!loaded.exists) {
      throw new CleanroomError('config_not_found', `runtime config does not exist at ${path}`, {
        suggestions: [`Create one with: ${configCommand('config init', path)} (without a file the defaults are used)`],
      })
    }
    this.log(`runtime config valid: ${path}`)
    this.log(`default backend: ${loaded.config.default_backend}`)
    return {path, valid: true, default_backend: loaded.config.default_backend}
  }
}
