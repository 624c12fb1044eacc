import type {BackendName} from '../config/schema.js'
import {CleanroomError} from '../errors/index.js'
import {type CliInfo, connectDaemon} from './connect.js'
import {parseEnvFlags} from './env.js'
import {afterDashDash} from './passthrough.js'
import {runSession} from './session.js'

/** The flags of `cleanroom exec`, as oclif or the fast start path parsed them. */
export interface ExecFlags {
  host?: string
  'sandbox-id'?: string
  keep?: boolean
  chdir?: string
  env?: string[]
  backend?: string
  image?: string
  'dangerously-allow-all'?: boolean
  tty?: boolean
}

/**
 * `cleanroom exec`: `argv` is what followed the command name; the command to
 * run is what follows `--` (or, without `--`, the arguments oclif left).
 * Resolves to the exit code.
 */
export async function execCommand(flags: ExecFlags, argv: string[], args: string[], cli: CliInfo): Promise<number> {
  const command = argv.includes('--') ? afterDashDash(argv) : args
  if (command.length === 0) throw new CleanroomError('usage', 'no command given', {suggestions: ['Put the command after --: cleanroom exec -- npm test']})

  const client = connectDaemon({host: flags.host, ...cli})
  const outcome = await runSession(client, {
    sandboxId: flags['sandbox-id'],
    keep: flags.keep === true,
    allowAll: flags['dangerously-allow-all'] === true,
    dir: flags.chdir,
    backend: flags.backend as BackendName | undefined,
    ...(flags.image === undefined ? {} : {image: flags.image}),
    argv: command,
    env: parseEnvFlags(flags.env ?? []),
    tty: flags.tty === true,
    terminal: {stdin: process.stdin, stdout: process.stdout, stderr: process.stderr},
  })
  return outcome.exitCode
}
