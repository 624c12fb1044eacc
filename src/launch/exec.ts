import type {CliInfo} from '../client/connect.js'
import {execCommand} from '../client/exec-command.js'
import {type ManifestFlag, parseFlags} from './argv.js'
import {runCommand} from './errors.js'

/**
 * `cleanroom exec` without oclif, when `argv` (what followed `exec`) parses
 * without doubt against the command's flags; false hands the line to oclif.
 */
export async function fastExec(argv: string[], flags: Record<string, ManifestFlag>, cli: CliInfo): Promise<boolean> {
  const parsed = parseFlags(argv, flags)
  if (!parsed) return false
  await runCommand(() => execCommand(parsed, argv, [], cli))
  return true
}
