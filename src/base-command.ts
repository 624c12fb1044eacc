import {Command, Errors} from '@oclif/core'

import {isCleanroomError} from './errors/index.js'

/**
 * The one place where library errors become CLI output and exit codes.
 * Every cleanroom command extends this; commands never call process.exit.
 */
export abstract class BaseCommand extends Command {
  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (isCleanroomError(error)) {
      const cliError = new Errors.CLIError(error.message, {
        code: error.code,
        exit: error.exitCode,
        suggestions: error.suggestions.length > 0 ? error.suggestions : undefined,
      })
      if (error.details !== undefined) Object.assign(cliError, {details: error.details})
      return super.catch(cliError)
    }
    return super.catch(error)
  }
}
