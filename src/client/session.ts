import type {BackendName} from '../config/schema.js'
import {isCleanroomError} from '../errors/index.js'
import type {ExecRequest} from '../sandbox/types.js'
import type {DaemonClient} from './client.js'
import {createSandboxForRepo, refuseNewSandboxFlags} from './create.js'
import {type ExecOutcome, runInSandbox, type Terminal, terminalSize} from './exec.js'

export interface SessionOptions {
  sandboxId?: string
  keep: boolean
  allowAll: boolean
  dir?: string
  /** `--backend` for a new sandbox; undefined: the runtime config's default. */
  backend?: BackendName
  /** `--image` for a new sandbox; undefined: the policy's. */
  image?: string
  argv: string[]
  env: Record<string, string>
  tty: boolean
  terminal: Terminal
}

/**
 * What `exec` and `console` share: use the given sandbox or create one for
 * the repository, run the command, then remove a created sandbox unless kept
 * (a kept one's id goes to stderr as `sandbox_id=<id>`).
 */
export async function runSession(client: DaemonClient, options: SessionOptions): Promise<ExecOutcome> {
  refuseNewSandboxFlags(options)
  const {terminal} = options
  const created = options.sandboxId === undefined
  // A sandbox made for this one command is ephemeral: the daemon removes it when the command's stream ends or
  // drops, so a CLI killed at any point (before its exec even started) leaves nothing running.
  const sandboxId =
    options.sandboxId ??
    (
      await createSandboxForRepo(client, {
        dir: options.dir ?? process.cwd(),
        backend: options.backend,
        allowAll: options.allowAll,
        ephemeral: !options.keep,
        ...(options.image === undefined ? {} : {image: options.image}),
        notice: (message) => terminal.stderr.write(`cleanroom: ${message}\n`),
        progress: terminal.stderr,
      })
    ).sandbox_id

  const request: ExecRequest = {argv: options.argv, env: options.env, tty: options.tty, ...(options.tty ? terminalSize(terminal.stdout) : {})}
  try {
    return await runInSandbox(client, sandboxId, request, terminal)
  } finally {
    // The daemon removes it too; waiting for that here means no part of it outlives the command.
    if (created && !options.keep) await client.removeSandbox(sandboxId).catch(ignoreNotFound)
    else if (created) terminal.stderr.write(`sandbox_id=${sandboxId}\n`)
  }
}

function ignoreNotFound(error: unknown): void {
  if (!(isCleanroomError(error) && error.code === 'sandbox_not_found')) throw error
}
