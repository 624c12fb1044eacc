import {isCleanroomError} from '../errors/index.js'
import {renderError} from '../errors/render.js'
import {visibleText} from '../util/visible.js'

/**
 * Runs a command of the fast start path and turns its result into the exit code,
 * and its error into stderr output and exit code, as BaseCommand does for oclif.
 */
export async function runCommand(run: () => Promise<number>): Promise<void> {
  try {
    process.exitCode = await run()
  } catch (error) {
    if (isCleanroomError(error)) {
      process.stderr.write(renderError(error))
      process.exitCode = error.exitCode
      return
    }
    process.stderr.write(`Error: ${visibleText(error instanceof Error ? error.message : String(error))}\n`)
    if (process.env.DEBUG && error instanceof Error && error.stack) process.stderr.write(`${error.stack}\n`)
    process.exitCode = 1
  }
}
