import {AGENT_PACKAGE_MOUNT} from './cache/layout.js'
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
export function buildAgentScript(spec: Pick<AgentSpec, 'command' | 'install' | 'name' | 'package' | 'test' | 'version'>, args: readonly string[]): string {
  // The seed's fallbacks, repeated here so a spec completed elsewhere cannot yield `exec` with no command.
  const command = spec.command.trim() === '' ? spec.name : spec.command
  const test = spec.test.trim() === '' ? defaultTest(command, spec.package) : spec.test
  const run = spec.package === undefined ? command : `sh -c ${shellQuote(npmLauncher(spec.name, spec.package, spec.version))} sh ${command}`
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
    ['exec', run, ...agentArgs.map((arg) => shellQuote(arg))].join(' '),
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
export function defaultTest(command: string, npmPackage?: string): string {
  const test = commandTest(command)
  // With a package, npm can run the command when it is not installed.
  return npmPackage === undefined ? test : `${test} || command -v npm >/dev/null 2>&1`
}

/** The program `command` runs, when its first word can be read without running a shell: what is looked up on PATH. */
export function commandProgram(command: string): string | undefined {
  const word = firstShellWord(command)
  return word === undefined || word.expands ? undefined : word.value
}

/** Checks `command`'s first word: see defaultTest. */
function commandTest(command: string): string {
  const word = firstShellWord(command)
  if (word === undefined) return command.trim() === '' ? 'false' : 'true'
  const operand = word.expands ? word.source : shellQuote(word.value)
  if (word.value.includes('/')) return `test -f ${operand} && test -x ${operand}`
  return `command -v ${operand} >/dev/null 2>&1`
}

/** How long a copy npm fetched into a sandbox runs without npm asking the registry whether `@latest` moved. */
export const NPM_CHECK_INTERVAL_MINUTES = 24 * 60

/**
 * The `sh -c` text that runs an agent's command ("$@": the command's words, then
 * the user's arguments) from npm package `npmPackage` when its first word is not
 * on PATH:
 * - from the shared agent cache's entry mounted read-only at /cleanroom/agent in a
 *   sandbox `cleanroom agent` created (docs/agents.md#the-shared-agent-cache);
 * - else (a sandbox made otherwise, or for another agent) through npm in the
 *   sandbox: a copy npm already fetched into the sandbox's cache (~/.npm/_npx)
 *   runs directly when `@latest` was checked less than a day ago (npm's own
 *   start-up costs about 0.3 s); otherwise `npm exec --yes --package
 *   <package>@<version>` runs it, fetching through the egress proxy. The check's
 *   time is a stamp file in the sandbox's ~/.cache/cleanroom, set before npm runs,
 *   so a failed check falls back to the cached copy for a day instead of failing.
 */
export function npmLauncher(name: string, npmPackage: string, version = 'latest'): string {
  const stamp = `"$HOME/.cache/cleanroom/npm-latest-checked/${name}"`
  const shared = `${AGENT_PACKAGE_MOUNT}/node_modules`
  return [
    'if command -v "$1" >/dev/null 2>&1; then exec "$@"; fi',
    'bin="${1##*/}"; shift; cached=',
    `if [ -f ${shared}/${npmPackage}/package.json ] && [ -x "${shared}/.bin/$bin" ]; then exec "${shared}/.bin/$bin" "$@"; fi`,
    `for dir in "$HOME"/.npm/_npx/*/node_modules/${npmPackage}; do [ -d "$dir" ] && cached="\${dir%/node_modules/${npmPackage}}/node_modules/.bin/$bin"; done`,
    `if [ -x "$cached" ] && [ -n "$(find ${stamp} -mmin -${NPM_CHECK_INTERVAL_MINUTES} 2>/dev/null)" ]; then exec "$cached" "$@"; fi`,
    `[ -n "$cached" ] || echo "cleanroom: installing ${npmPackage}@${version}…" >&2`,
    `mkdir -p "\${HOME}/.cache/cleanroom/npm-latest-checked" && : > ${stamp}`,
    `exec npm exec --yes --package ${npmPackage}@${version} -- "$bin" "$@"`,
  ].join('\n')
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
