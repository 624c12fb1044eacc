import {Errors, type Hook} from '@oclif/core'

/**
 * `cleanroom image pull x` with no such command: oclif would say `command
 * image:pull:x not found`, in its internal id form. Say it with spaces, as the
 * user typed it, and point at the help of the longest topic that exists.
 */
const hook: Hook.CommandNotFound = async function (options) {
  const words = options.id.split(':')
  const topics = new Set(options.config.topics.map((topic) => topic.name))
  let known = words.length - 1
  while (known > 0 && !topics.has(words.slice(0, known).join(':'))) known--
  const help = ['cleanroom', ...words.slice(0, known), '--help'].join(' ')
  throw new Errors.CLIError(`command ${words.join(' ')} not found`, {exit: 2, suggestions: [`See the commands with: ${help}`]})
}

export default hook
