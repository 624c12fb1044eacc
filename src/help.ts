import {type Command, CommandHelp, Help, type Interfaces} from '@oclif/core'

import {loadAgentRegistry} from './agents/load.js'
import {listEntries, renderAgentSummary} from './agents/render.js'
import {messageOf} from './errors/index.js'

type HelpCommand = Command.Loadable & {usageTail?: string}

/**
 * A command's help with two things oclif gets wrong for us: the USAGE line of a
 * command that passes words on ends with them (`exec … -- CMD...`, `agent … NAME
 * [AGENT ARGS...]`) instead of listing them before the flags, and help reached
 * through an alias (`create`) names the command's other names, not itself.
 */
class CleanroomCommandHelp extends CommandHelp {
  protected override defaultUsage(): string {
    const {usageTail} = this.command as HelpCommand
    if (usageTail === undefined) return super.defaultUsage()
    // The flags as oclif writes them, then the words that follow them.
    const flagsOnly = new CleanroomCommandHelp({...this.command, args: {}, usageTail: undefined} as HelpCommand, this.config, this.opts)
    return `${flagsOnly.defaultUsage()} ${usageTail}`
  }

  protected override aliases(aliases: string[] | undefined): string | undefined {
    const {id} = this.command
    // oclif lists an alias's command under the alias's own id: name the command it stands for instead.
    const canonical = this.config.commands.find((command) => command.id !== id && command.aliases.includes(id))
    const names = [...(canonical ? [canonical.id] : []), ...(aliases ?? []).filter((alias) => alias !== id)]
    return super.aliases(names.map((name) => name.replaceAll(':', ' ')))
  }
}

/**
 * oclif's help, plus the list of agents under `cleanroom agent --help`: the
 * agents are data from plugins and the runtime config, so no static help text
 * can name them.
 */
export default class CleanroomHelp extends Help {
  protected override CommandHelpClass = CleanroomCommandHelp

  override async showCommandHelp(command: Command.Loadable): Promise<void> {
    await super.showCommandHelp(command)
    if (command.id === 'agent') await this.showAgents()
  }

  protected override async showTopicHelp(topic: Interfaces.Topic): Promise<void> {
    await super.showTopicHelp(topic)
    if (topic.name === 'agent') await this.showAgents()
  }

  private async showAgents(): Promise<void> {
    let lines: string[]
    try {
      const registry = await loadAgentRegistry(this.config)
      const entries = listEntries(registry)
      lines = entries.length > 0 ? renderAgentSummary(entries) : ['none (install one with: cleanroom plugins install <name>)']
      lines.push(...registry.warnings.map((warning) => `warning: ${warning}`))
    } catch (error) {
      lines = [`cannot list agents: ${messageOf(error)}`]
    }
    this.log(['AGENTS', ...lines.map((line) => `  ${line}`)].join('\n') + '\n')
  }
}
