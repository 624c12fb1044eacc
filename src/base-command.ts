import {Command, ux} from '@oclif/core'

import {isCleanroomError} from './errors/index.js'
import {errorJson, renderError} from './errors/render.js'
import {visibleJson, visibleText} from './util/visible.js'

type ThrownError = Error & {code?: string; oclif?: {exit?: number}}

/**
 * The one place where errors become CLI output and exit codes. Every
 * cleanroom command extends this; commands never call process.exit.
 */
export abstract class BaseCommand extends Command {
  /** `--json` output as oclif prints it (two-space indent), with what a terminal would act on escaped (src/util/visible.ts). */
  protected override logJson(json: unknown): void {
    ux.stdout(visibleJson(JSON.stringify(json, null, 2)))
  }

  protected override async catch(error: ThrownError): Promise<unknown> {
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
}
