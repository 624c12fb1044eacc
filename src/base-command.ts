import {Command, ux} from '@oclif/core'

import {CleanroomError, isCleanroomError} from './errors/index.js'
import {errorJson, renderError} from './errors/render.js'
import {visibleJson, visibleText} from './util/visible.js'

type ThrownError = Error & {code?: string; oclif?: {exit?: number}; flags?: unknown}

/**
 * The one place where errors become CLI output and exit codes. Every
 * cleanroom command extends this; commands never call process.exit.
 */
export abstract class BaseCommand extends Command {
  /** What follows the flags on the help's USAGE line, for commands that pass words on (src/help.ts). */
  static usageTail?: string

  /** `--json` output as oclif prints it (two-space indent), with what a terminal would act on escaped (src/util/visible.ts). */
  protected override logJson(json: unknown): void {
    ux.stdout(visibleJson(JSON.stringify(json, null, 2)))
  }

  /**
   * What to try instead when oclif refused `flag` as unknown: commands that pass
   * arguments on (exec, console, agent) say where those go. Undefined: oclif's own message.
   */
  protected usageHint(_flag: string): string | undefined {
    return undefined
  }

  protected override async catch(thrown: ThrownError): Promise<unknown> {
    const error = this.withUsageHint(thrown)
    // oclif's own errors (unknown flag, missing argument) carry their exit code in `oclif.exit`.
    const exitCode = isCleanroomError(error) ? error.exitCode : (error.oclif?.exit ?? 1)
    process.exitCode = exitCode
    if (this.jsonEnabled()) {
      const fallbackCode = exitCode === 2 ? 'usage' : 'error'
      this.logJson(isCleanroomError(error) ? errorJson(error) : {error: {code: error.code ?? fallbackCode, message: error.message}})
      return undefined
    }
    if (isCleanroomError(error)) {
      process.stderr.write(renderError(error))
      this.exit(exitCode)
    }
    // Other errors can quote a path from a sandbox too (a failed open names its file).
    error.message = visibleText(error.message)
    return super.catch(error)
  }

  /** oclif's "Nonexistent flag" as a usage error with the command's hint, when it has one. */
  private withUsageHint(error: ThrownError): ThrownError {
    const flag = error.constructor.name === 'NonExistentFlagsError' && Array.isArray(error.flags) ? error.flags[0] : undefined
    const hint = typeof flag === 'string' ? this.usageHint(flag) : undefined
    if (hint === undefined) return error
    return new CleanroomError('usage', `${error.message.split('\n')[0]} (not a flag of cleanroom ${this.id?.replaceAll(':', ' ')})`, {suggestions: [hint]})
  }
}
