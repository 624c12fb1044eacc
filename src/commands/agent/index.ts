import {Args, Flags} from '@oclif/core'

import {splitAgentArgv} from '../../agents/argv.js'
import {loadAgentRegistry} from '../../agents/load.js'
import {listEntries, renderAgentList} from '../../agents/render.js'
import {runAgent} from '../../client/agent.js'
import {allowAllFlag, backendFlag, DaemonCommand} from '../../client/command.js'
import type {BackendName} from '../../config/schema.js'
import {CleanroomError} from '../../errors/index.js'
import {policyDirFlag} from '../../policy/flags.js'
import {pasteable} from '../../util/pasteable.js'

export default class Agent extends DaemonCommand {
  static override summary = 'Run a coding agent in a sandbox of this repository'
  static override description = `Creates a sandbox from the repository's policy plus the hosts the agent needs (printed first), gives the agent its credentials through the sandbox's credential gateway (the sandbox holds phantom tokens only; credentials: copy in the runtime config copies the files in instead), and runs the agent there with your terminal. cleanroom's flags go before the agent's name; everything after the name goes to the agent as typed, in order (a single leading -- is dropped), so "cleanroom agent codex --help" shows Codex's help and "cleanroom agent --help" this one. The sandbox is kept afterwards and its id printed (sandbox_id=…): pass it to --sandbox-id to continue in it. An agent that comes from npm runs from the agent cache shared by this machine's sandboxes (mounted read-only; @latest checked once a day, --update to check now). Without a name, lists the agents.`
  static override usageTail = 'NAME [AGENT ARGS...]'
  static override examples = [
    '<%= config.bin %> agent claude',
    '<%= config.bin %> agent codex exec --yolo "fix the failing tests"',
    '<%= config.bin %> agent codex --help',
    '<%= config.bin %> agent --sandbox-id cr_01JD… codex exec "inspect the current tree"',
    '<%= config.bin %> agent --update gemini --version',
  ]
  static override args = {name: Args.string({description: 'Agent name (see: cleanroom agent list); what follows it goes to the agent'})}
  static override flags = {
    'sandbox-id': Flags.string({summary: 'Run in this existing sandbox (its policy is left as it is)', helpValue: 'ID'}),
    chdir: policyDirFlag,
    backend: backendFlag,
    'dangerously-allow-all': allowAllFlag,
    update: Flags.boolean({summary: "Check the npm registry for the agent's release now, not at most once a day"}),
  }

  /** The line as typed, split at the agent's name (oclif's parse replaces this.argv with the part it parsed). */
  private line = splitAgentArgv([], {})

  async run(): Promise<void> {
    this.line = splitAgentArgv(this.argv, {...Agent.baseFlags, ...Agent.flags})
    const {line} = this
    const {args, flags} = await this.parse(Agent, line.cleanroom)
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
    const outcome = await runAgent(await this.daemon(flags.host), {
      agent: agent.spec,
      args: line.afterName,
      sandboxId: flags['sandbox-id'],
      dir: flags.chdir,
      backend: flags.backend as BackendName | undefined,
      allowAll: flags['dangerously-allow-all'],
      update: flags.update,
      terminal: {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr},
      trustedGateway: agent.sources.every((source) => source.kind !== 'plugin'),
    })
    process.exitCode = outcome.exitCode
  }

  /** A flag oclif does not know sits before the agent's name: the agent's own flags go after it. */
  protected override usageHint(flag: string): string {
    const {line} = this
    const ours = line.cleanroom.filter((token) => token !== flag && token !== line.name)
    const name = line.name ?? '<name>'
    const theirs = line.afterName[0] === '--' ? line.afterName.slice(1) : line.afterName
    return `Flags for the agent go after its name: ${pasteable(['cleanroom', 'agent', ...ours, name, flag, ...theirs])}`
  }
}
