import type {PublicSandbox} from '../../client/client.js'
import {allowAllFlag, backendFlag, DaemonCommand, imageFlag} from '../../client/command.js'
import {createSandboxForRepo} from '../../client/create.js'
import type {BackendName} from '../../config/schema.js'
import {policyDirFlag} from '../../policy/flags.js'

export default class SandboxCreate extends DaemonCommand {
  static override summary = 'Create a sandbox for the repository and print its id'
  static override description = `The sandbox gets the repository's policy (cleanroom.yaml, or the built-in default with no network), the policy's image as its root filesystem (or --image's; pulled first when it is not cached), and the repository at /workspace, writable, with nothing written back to the host. It stays until "cleanroom sandbox rm".`
  static override aliases = ['create']
  static override examples = [
    '<%= config.bin %> sandbox create',
    '<%= config.bin %> sandbox create -c ../other-repo --json',
    '<%= config.bin %> sandbox create --image ghcr.io/acme/base:1.2',
  ]
  static override enableJsonFlag = true
  static override flags = {
    chdir: policyDirFlag,
    backend: backendFlag,
    image: imageFlag,
    'dangerously-allow-all': allowAllFlag,
  }

  async run(): Promise<PublicSandbox> {
    const {flags} = await this.parse(SandboxCreate)
    const client = await this.daemon(flags.host)
    const sandbox = await createSandboxForRepo(client, {
      dir: flags.chdir ?? process.cwd(),
      backend: flags.backend as BackendName | undefined,
      allowAll: flags['dangerously-allow-all'],
      ...(flags.image === undefined ? {} : {image: flags.image}),
      notice: (message) => this.logToStderr(message),
    })
    this.log(sandbox.sandbox_id)
    return sandbox
  }
}
