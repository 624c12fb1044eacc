import {Flags} from '@oclif/core'

import {BaseCommand} from '../base-command.js'
import {socketPathOf} from '../client/connect.js'
import {loadRuntimeConfig} from '../config/load.js'
import {startDaemon} from '../daemon/daemon.js'
import {stateDir} from '../paths.js'
import {closeInheritedFds} from '../util/fds.js'

export default class Serve extends BaseCommand {
  static override summary = 'Run the cleanroom daemon in the foreground'
  static override description = `The daemon owns the sandboxes: every other command talks to it over a unix socket (mode 0600) and starts it in the background when none answers, so running it by hand is only needed under a service manager. Stopping it (SIGTERM, Ctrl-C) leaves sandboxes running; a new daemon adopts them. With --shutdown-sandboxes it removes them on the way out.`
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
    const log = (message: string) => process.stderr.write(`${new Date().toISOString()} ${message}\n`)
    const daemon = await startDaemon({socketPath: socketPathOf(flags.listen), stateDir: stateDir(), config, version: this.config.version, log})

    await new Promise<void>((resolve) => {
      const stop = (signal: NodeJS.Signals) => {
        log(`${signal}: stopping${flags['shutdown-sandboxes'] ? ' and removing every sandbox' : '; sandboxes keep running'}`)
        process.off('SIGINT', stop)
        process.off('SIGTERM', stop)
        void daemon.close({shutdownSandboxes: flags['shutdown-sandboxes']}).finally(resolve)
      }
      process.on('SIGINT', stop)
      process.on('SIGTERM', stop)
    })
  }
}
