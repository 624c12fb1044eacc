import {Flags} from '@oclif/core'
import {commands} from '@oclif/plugin-plugins'

const OclifReset = commands['plugins:reset']

/**
 * plugin-plugins' `plugins reset`, less `--reinstall`: that would fetch every
 * plugin again with no preview and load each one with oclif, running the code
 * of a plugin cleanroom refuses to load.
 */
export default class PluginsReset extends OclifReset {
  static override summary = 'Remove all installed and linked plugins'
  static override description = 'To add them again, install each one with "cleanroom plugins install", which shows what it asks for first.'
  static override flags = {
    ...OclifReset.flags,
    reinstall: Flags.boolean({hidden: true, summary: 'Not available in cleanroom: install each plugin again with cleanroom plugins install'}),
  }

  override async run(): Promise<void> {
    const {flags} = await this.parse(PluginsReset)
    if (flags.reinstall) {
      this.error('cleanroom plugins reset has no --reinstall: after the reset, install each plugin again with cleanroom plugins install, which shows what it asks for first', {exit: 2})
    }
    await super.run()
  }
}
