import {BaseCommand} from '../../base-command.js'
import {defaultConfigPath} from '../../config/paths.js'

export default class ConfigPath extends BaseCommand {
  static override summary = 'Print where the runtime config is read from'
  static override examples = ['<%= config.bin %> config path', '$EDITOR "$(<%= config.bin %> config path)"']
  static override enableJsonFlag = true

  async run(): Promise<{path: string}> {
    await this.parse(ConfigPath)
    const path = defaultConfigPath()
    this.log(path)
    return {path}
  }
}
