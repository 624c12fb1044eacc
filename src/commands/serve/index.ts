import {Flags} from '@oclif/core'

import {BaseCommand} from '../../base-command.js'
import {socketPathOf} from '../../client/connect.js'
import {loadRuntimeConfig} from '../../config/load.js'
import {serveInForeground} from '../../daemon/foreground.js'
import {stateDir} from '../../paths.js'
import {closeInheritedFds} from '../../util/fds.js'

export default class Serve extends BaseCommand {
  static override summary = 'Run the cleanroom daemon in the foreground'
  static override description = `The daemon owns the sandboxes: every other command talks to it over a unix socket (mode 0600) and starts it in the background when none answers, so running it by hand is only needed under a service manager. One daemon owns a state dir: a second one exits at once, naming the first. Stopping it (SIGTERM, Ctrl-C, "cleanroom serve stop") leaves sandboxes running and takes at most a few seconds; a new daemon adopts them. With --shutdown-sandboxes it removes them on the way out.`
  static override examples = [
    '<%= config.bin %> serve',
    '<%= config.bin %> serve --listen unix:///run/cleanroom/cleanroom.sock',
    '<%= config.bin %> serve --shutdown-sandboxes',
  ]
  static override flags = {
    listen: Flags.string({summary: 'Where to listen (default: $XDG_RUNTIME_DIR/cleanroom/cleanroom.sock)', helpValue: 'unix:///path'}),
    'shutdown-sandboxes': Flags.boolean({summary: 'Remove every sandbox when the daemon stops'}),
  }

  async run(): Promise<void> {
    // Before anything is spawned: no fd of whoever started the daemon may reach a sandbox.
    closeInheritedFds()
    const {flags} = await this.parse(Serve)
    const {config} = await loadRuntimeConfig()
    await serveInForeground({socketPath: socketPathOf(flags.listen), stateDir: stateDir(), config, version: this.config.version, shutdownSandboxes: flags['shutdown-sandboxes']})
  }
}
