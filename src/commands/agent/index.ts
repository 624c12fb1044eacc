import {Args, Flags} from '@oclif/core'

import {loadAgentRegistry} from '../../agents/load.js'
import {listEntries, renderAgentList} from '../../agents/render.js'
import {splitPassthrough} from '../../agents/script.js'
import {runAgent} from '../../client/agent.js'
import {allowAllFlag, backendFlag, DaemonCommand} from '../../client/command.js'
import type {BackendName} from '../../config/schema.js'
import {CleanroomError} from '../../errors/index.js'
import {policyDirFlag} from '../../policy/flags.js'

export default class Agent extends DaemonCommand {
  static override summary = 'Run a coding agent in a sandbox of this repository'
  static override description = `Creates a sandbox from the repository's policy plus the hosts the agent needs (printed first), gives the agent its credentials through the sandbox's credential gateway (the sandbox holds phantom tokens only; credentials: copy in the runtime config copies the files in instead), and runs the agent there with your terminal; arguments after -- go to the agent untouched. The sandbox is kept afterwards and its id printed (sandbox_id=…): pass it to --sandbox-id to continue in it. When the agent's binary is not in the sandbox it is run with npm exec through the egress proxy. Without a name, lists the agents.`
  static override strict = false
  static override examples = [
    '<%= config.bin %> agent claude',
    '<%= config.bin %> agent codex -- exec --yolo "fix the failing tests"',
    '<%= config.bin %> agent --sandbox-id cr_01JD… codex -- exec "inspect the current tree"',
    '<%= config.bin %> agent --dangerously-allow-all gemini',
  ]
  static override args = {name: Args.string({description: 'Agent name (see: cleanroom agent list)'})}
  static override flags = {
    'sandbox-id': Flags.string({summary: 'Run in this existing sandbox (its policy is left as it is)', helpValue: 'ID'}),
    chdir: policyDirFlag,
    backend: backendFlag,
    'dangerously-allow-all': allowAllFlag,
  }

  async run(): Promise<void> {
    const {args, argv, flags} = await this.parse(Agent)
    const registry = await loadAgentRegistry(this.config)
    for (const warning of registry.warnings) this.warn(warning)
    if (args.name === undefined) {
      this.log(renderAgentList(listEntries(registry)))
      return
    }
    const agent = registry.agents.get(args.name)
    if (!agent) {
      throw new CleanroomError('usage', `unknown agent "${args.name}"`, {
        suggestions: [`One of: ${[...registry.agents.keys()].join(', ')}`, 'Or add it to the agents: map of the runtime config (cleanroom config init)'],
      })
    }
    // oclif's parsed argv re-sorts repeated tokens: take the passthrough from the raw argv.
    const passthrough = this.argv.includes('--') ? splitPassthrough(this.argv).passthrough : (argv as string[]).slice(1)
    const outcome = await runAgent(await this.daemon(flags.host), {
      agent: agent.spec,
      args: passthrough,
      sandboxId: flags['sandbox-id'],
      dir: flags.chdir,
      backend: flags.backend as BackendName | undefined,
      allowAll: flags['dangerously-allow-all'],
      terminal: {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr},
      trustedGateway: agent.sources.every((source) => source.kind !== 'plugin'),
    })
    process.exitCode = outcome.exitCode
  }
}
