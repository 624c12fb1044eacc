import {DaemonCommand} from '../../client/command.js'
import {socketPathOf} from '../../client/connect.js'
import {type StopResult, stopDaemon, TERM_WAIT_MS} from '../../client/stop-daemon.js'

export default class ServeStop extends DaemonCommand {
  static override summary = 'Stop the cleanroom daemon; sandboxes keep running'
  static override description = `Stops the daemon on the socket (--host, $CLEANROOM_HOST or the per-user one), also a daemon of another cleanroom version or one that no longer answers: SIGTERM, then SIGKILL if it is still there after ${TERM_WAIT_MS / 1000} s. Only a process of this user that listens on that socket (or holds its state dir's lock) is signalled. Sandboxes keep running; the next cleanroom command starts a daemon, which takes them over.`
  static override examples = ['<%= config.bin %> serve stop', '<%= config.bin %> serve stop --host unix:///run/cleanroom/cleanroom.sock --json']
  static override enableJsonFlag = true

  async run(): Promise<StopResult> {
    const {flags} = await this.parse(ServeStop)
    const result = await stopDaemon(socketPathOf(flags.host))
    this.log(
      result.stopped
        ? `stopped the cleanroom daemon (pid ${result.pid}${result.version ? `, version ${result.version}` : ''}) with ${result.signal}; sandboxes keep running`
        : `no cleanroom daemon is running at ${result.socket}`,
    )
    return result
  }
}
