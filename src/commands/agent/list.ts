import {loadAgentRegistry} from '../../agents/load.js'
import {type AgentListEntry, listEntries, renderAgentList} from '../../agents/render.js'
import {BaseCommand} from '../../base-command.js'
import {configPathFlag} from '../../config/flags.js'

export default class AgentList extends BaseCommand {
  static override summary = 'List the agents cleanroom can run, with where each comes from'
  static override description = `Agents come from the built-in plugins, from plugins installed with "cleanroom plugins install", and from the agents: map of the runtime config; a later source overrides an earlier one by name. For each agent this shows its source, the command it runs, the credential files copied into the sandbox and the hosts it may reach.`
  static override examples = ['<%= config.bin %> agent list', '<%= config.bin %> agent list --json']
  static override enableJsonFlag = true
  static override flags = {
    path: configPathFlag,
  }

  async run(): Promise<AgentListEntry[]> {
    const {flags} = await this.parse(AgentList)
    const registry = await loadAgentRegistry(this.config, flags.path)
    for (const warning of registry.warnings) this.warn(warning)
    const entries = listEntries(registry)
    this.log(renderAgentList(entries))
    return entries
  }
}
