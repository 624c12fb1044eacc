import {RESERVED_AGENT_NAMES} from './spec.js'

/** What splitting needs of a flag: oclif's flag objects and the manifest's entries both fit. */
export interface FlagShape {
  type: 'boolean' | 'option'
  char?: string
  aliases?: readonly string[]
  charAliases?: readonly string[]
}

/** `cleanroom agent [flags] <name> [args…]`, taken apart. */
export interface AgentArgv {
  /** cleanroom's own flags and the agent's name: the part oclif parses. */
  cleanroom: string[]
  /** The agent's name, when the line has one. */
  name?: string
  /** Every token after the name, as typed and in order (the agent script drops one leading `--`: buildAgentScript). */
  afterName: string[]
  /** Whether a `--` ended cleanroom's flags before the name (`agent -- codex …`). */
  dashDashBeforeName: boolean
}

/**
 * Splits what followed `cleanroom agent` at the agent's name: cleanroom's flags
 * come before it, and everything after it belongs to the agent byte for byte,
 * whatever it looks like (`--help`, `-c`, `--sandbox-id`, a second `--`); the
 * script then drops a single leading `--` (the Go tool's rule). The name is the first
 * token that is neither a flag nor the value of a flag that takes one; a `--`
 * before it ends the flags, so `agent -- codex x` names `codex`. An unknown flag
 * is taken to need no value: oclif then refuses it by name.
 */
export function splitAgentArgv(argv: readonly string[], flags: Record<string, FlagShape>): AgentArgv {
  const byName = new Map<string, FlagShape>()
  const byChar = new Map<string, FlagShape>()
  for (const [name, flag] of Object.entries(flags)) {
    for (const spelling of [name, ...(flag.aliases ?? [])]) byName.set(spelling, flag)
    for (const char of [flag.char, ...(flag.charAliases ?? [])]) if (char) byChar.set(char, flag)
  }

  for (let i = 0; i < argv.length; i++) {
    const token = argv[i]!
    if (token === '--') return named(argv.slice(0, i), argv[i + 1], argv.slice(i + 2), true)
    if (token.startsWith('--')) {
      if (!token.includes('=') && byName.get(token.slice(2))?.type === 'option') i++
      continue
    }
    if (token.startsWith('-') && token.length > 1) {
      // `-c DIR` takes the next token; `-cDIR` and `-c=DIR` carry their value.
      if (token.length === 2 && byChar.get(token[1]!)?.type === 'option') i++
      continue
    }
    return named(argv.slice(0, i), token, argv.slice(i + 1), false)
  }
  return {cleanroom: [...argv], afterName: [], dashDashBeforeName: false}
}

function named(flags: string[], name: string | undefined, afterName: string[], dashDashBeforeName: boolean): AgentArgv {
  if (name === undefined) return {cleanroom: flags, afterName: [], dashDashBeforeName}
  return {cleanroom: [...flags, name], name, afterName, dashDashBeforeName}
}

/**
 * The line oclif gets for `cleanroom agent …`: a `--` is put after the agent's
 * name (unless the user ended cleanroom's flags themselves), because oclif reads
 * `--help` anywhere before a `--` as a request for cleanroom's help, so
 * `cleanroom agent codex --help` would never reach Codex. The agent still gets
 * what was typed: the agent script drops that one leading `--`.
 */
export function separateAgentArgs(argv: readonly string[], flags: Record<string, FlagShape>): string[] {
  const split = splitAgentArgv(argv, flags)
  if (split.name === undefined || split.dashDashBeforeName || RESERVED_AGENT_NAMES.includes(split.name)) return [...argv]
  const after = argv.slice(split.cleanroom.length)
  if (after.length === 0 || after[0] === '--') return [...argv]
  return [...split.cleanroom, '--', ...after]
}
