/**
 * Typed errors. Library code throws these; the command layer turns them into
 * output and an exit code in one place (BaseCommand.catch).
 */

export type ErrorCode =
  | 'agent_cache_busy'
  | 'agent_exists'
  | 'agent_install_failed'
  | 'agent_not_found'
  | 'agent_spec_invalid'
  | 'backend_capability_mismatch'
  | 'backend_failed'
  | 'backend_unavailable'
  | 'bad_request'
  | 'config_exists'
  | 'config_invalid'
  | 'config_not_found'
  | 'credential_source_unreadable'
  | 'credential_target_invalid'
  | 'daemon_already_running'
  | 'daemon_elsewhere'
  | 'daemon_unavailable'
  | 'daemon_untrusted'
  | 'daemon_version_mismatch'
  | 'exec_lost'
  | 'exec_not_found'
  | 'image_in_use'
  | 'image_invalid'
  | 'image_not_found'
  | 'image_not_pulled'
  | 'image_ref_invalid'
  | 'image_unsupported'
  | 'interrupted'
  | 'path_escapes_root'
  | 'plugin_install_failed'
  | 'plugin_invalid'
  | 'plugin_runs_code'
  | 'policy_exists'
  | 'policy_invalid'
  | 'policy_not_found'
  | 'resources_over_maximum'
  | 'registry_auth_failed'
  | 'registry_failed'
  | 'sandbox_failed'
  | 'sandbox_not_found'
  | 'sandbox_not_ready'
  | 'sandbox_tool_missing'
  | 'usage'
  | 'workspace_apply_failed'
  | 'workspace_changed'
  | 'workspace_conflict'
  | 'workspace_risky_paths'
  | 'workspace_unavailable'
  | 'workspace_unsupported_entry'

/** Exit codes by error code; anything not listed exits 1. */
const EXIT_CODES: Partial<Record<ErrorCode, number>> = {
  agent_exists: 2,
  agent_not_found: 127,
  bad_request: 2,
  config_invalid: 2,
  image_ref_invalid: 2,
  interrupted: 130,
  plugin_invalid: 2,
  plugin_runs_code: 2,
  policy_invalid: 2,
  usage: 2,
}

export interface CleanroomErrorOptions {
  /** What the user can do about it, one step per entry. */
  suggestions?: string[]
  /** Structured detail for `--json` output (e.g. the list of policy issues). */
  details?: unknown
  cause?: unknown
}

export class CleanroomError extends Error {
  readonly code: ErrorCode
  readonly suggestions: string[]
  readonly details: unknown

  constructor(code: ErrorCode, message: string, options: CleanroomErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : {cause: options.cause})
    this.name = 'CleanroomError'
    this.code = code
    this.suggestions = options.suggestions ?? []
    this.details = options.details
  }

  get exitCode(): number {
    return EXIT_CODES[this.code] ?? 1
  }
}

export function isCleanroomError(error: unknown): error is CleanroomError {
  return error instanceof CleanroomError
}

/** A message for any thrown value, for wrapping errors of other libraries. */
export function messageOf(error: unknown): string {
  if (error instanceof Error) return error.message
  return String(error)
}
