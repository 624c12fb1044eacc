import type {AgentSpec} from './spec.js'

/** One POSIX shell word, single-quoted so the shell passes it on byte for byte. */
export function shellQuote(arg: string): string {
  if (arg === '') return "''"
  return `'${arg.replaceAll("'", `'"'"'`)}'`
}

/**
 * The script `sh -lc` runs in the sandbox, in the Go tool's exact format: install
 * the agent when its test fails, exit 127 with a message when it is still missing,
 * then `exec` the command with the user's arguments, each single-quoted.
 * One leading `--` in `args` is dropped (the seed's behaviour: `agent codex -- -- x` passes `x`).
 */
export function buildAgentScript(spec: Pick<AgentSpec, 'command' | 'install' | 'name' | 'test'>, args: readonly string[]): string {
  // The seed's fallbacks, repeated here so a spec completed elsewhere cannot yield `exec` with no command.
  const command = spec.command.trim() === '' ? spec.name : spec.command
  const test = spec.test.trim() === '' ? defaultTest(command) : spec.test
  const agentArgs = args[0] === '--' ? args.slice(1) : args

  const lines = ['set -e']
  if (spec.install !== undefined && spec.install.trim() !== '') {
    lines.push(`if ! (${test}); then`, spec.install, 'fi')
  }
  lines.push(
    `if ! (${test}); then`,
    `printf '%s\\n' ${shellQuote(`cleanroom: agent command not found: ${spec.name}`)} >&2`,
    'exit 127',
    'fi',
    ['exec', command, ...agentArgs.map((arg) => shellQuote(arg))].join(' '),
  )
  return lines.join('\n')
}

/**
 * The test used when a spec gives a command but no test: it checks the command's
 * first word, not the agent's name, so wrappers (`npx …`) and absolute paths work.
 * - a word with a `/` is a path: `test -f … && test -x …` (dash's `command -v` accepts any
 *   existing path, directories included);
 * - any other word: `command -v …`;
 * - a word the shell expands (`$VAR`, `~/bin/x`, globs) is reused as written, so the test
 *   expands it exactly as the `exec` line will;
 * - a word that needs a command substitution, or no word at all, cannot be checked
 *   statically: `true` for the former (the shell's own "not found", exit 127, still applies
 *   at `exec`), `false` for an empty command.
 */
export function defaultTest(command: string): string {
  const word = firstShellWord(command)
  if (word === undefined) return command.trim() === '' ? 'false' : 'true'
  const operand = word.expands ? word.source : shellQuote(word.value)
  if (word.value.includes('/')) return `test -f ${operand} && test -x ${operand}`
  return `command -v ${operand} >/dev/null 2>&1`
}

/**
 * Splits the raw argv of `cleanroom agent` at its first `--`: what comes before holds
 * the flags and the agent name, what comes after goes to the agent untouched (a second
 * `--` and flags such as `--json` included). oclif's parsed argv cannot be used for
 * this: it re-sorts tokens by their first occurrence, so repeated tokens move.
 */
export function splitPassthrough(rawArgv: readonly string[]): {flagsAndName: string[]; passthrough: string[]} {
  const dashDash = rawArgv.indexOf('--')
  if (dashDash < 0) return {flagsAndName: [...rawArgv], passthrough: []}
  return {flagsAndName: rawArgv.slice(0, dashDash), passthrough: rawArgv.slice(dashDash + 1)}
}

interface ShellWord {
  /** The word after quote removal, as the shell would see it without expansions. */
  value: string
  /** The word as written in the command. */
  source: string
  /** Whether the shell would expand it (parameters, a leading tilde, globs). */
  expands: boolean
}

const WORD_END = new Set([' ', '\t', '\n', ';', '&', '|', '<', '>'])
const DOUBLE_QUOTE_ESCAPABLE = new Set(['$', '`', '"', '\\', '\n'])

/** The first word of a shell command, or undefined when it has none or cannot be read statically. */
function firstShellWord(command: string): ShellWord | undefined {
  let i = 0
  while (i < command.length && (command[i] === ' ' || command[i] === '\t' || command[i] === '\n')) i++
  const start = i
  let value = ''
  let expands = false
  const isSubstitution = (at: number) => command[at] === '`' || (command[at] === '$' && command[at + 1] === '(')

  while (i < command.length && !WORD_END.has(command[i] ?? '')) {
    const char = command[i] ?? ''
    if (isSubstitution(i)) return undefined
    if (char === "'") {
      const close = command.indexOf("'", i + 1)
      if (close < 0) return undefined
      value += command.slice(i + 1, close)
      i = close + 1
    } else if (char === '"') {
      i++
      while (i < command.length && command[i] !== '"') {
        if (isSubstitution(i)) return undefined
        const next = command[i + 1] ?? ''
        if (command[i] === '\\' && DOUBLE_QUOTE_ESCAPABLE.has(next)) {
          if (next !== '\n') value += next
          i += 2
          continue
        }
        if (command[i] === '$') expands = true
        value += command[i]
        i++
      }
      if (i >= command.length) return undefined
      i++
    } else if (char === '\\') {
      const next = command[i + 1]
      if (next === undefined) return undefined
      if (next !== '\n') value += next
      i += 2
    } else {
      if ('$*?['.includes(char) || (char === '~' && i === start)) expands = true
      value += char
      i++
    }
  }

  if (i === start) return undefined
  return {value, source: command.slice(start, i), expands}
}
