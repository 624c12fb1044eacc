import {visibleText} from '../util/visible.js'
import type {CleanroomError} from './index.js'

/**
 * The text form of an error on stderr: the message with its lines intact
 * (they carry file:line:col locations, so they are never re-wrapped), then
 * each fix on its own line. Messages can quote a sandbox's names and output,
 * so whatever a terminal would act on is shown escaped.
 */
export function renderError(error: CleanroomError): string {
  const [first = '', ...rest] = visibleText(error.message).split('\n')
  const lines = [`Error: ${first}`, ...rest.map((line) => `  ${line}`)]
  for (const suggestion of error.suggestions) lines.push(`Try this: ${visibleText(suggestion)}`)
  return `${lines.join('\n')}\n`
}

/** The `--json` form of an error: `{error: {code, message, suggestions, details?}}`. */
export function errorJson(error: CleanroomError): {error: Record<string, unknown>} {
  const body: Record<string, unknown> = {code: error.code, message: error.message, suggestions: error.suggestions}
  if (error.details !== undefined) body.details = error.details
  return {error: body}
}
