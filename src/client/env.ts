import {CleanroomError} from '../errors/index.js'
import {isEnvName} from '../util/env-name.js'

/** `-e KEY=VALUE` sets a variable; `-e KEY` passes the host's value of KEY (an error when unset). */
export function parseEnvFlags(flags: readonly string[], hostEnv: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const env: Record<string, string> = {}
  for (const flag of flags) {
    if (flag.includes('\0')) throw new CleanroomError('usage', `invalid --env ${JSON.stringify(flag)}: contains NUL`)
    const equals = flag.indexOf('=')
    const name = equals < 0 ? flag : flag.slice(0, equals)
    if (!isEnvName(name)) {
      throw new CleanroomError('usage', `invalid --env ${JSON.stringify(flag)}: ${name === '' ? 'missing variable name' : `${JSON.stringify(name)} is not a variable name`}`)
    }
    if (equals >= 0) {
      env[name] = flag.slice(equals + 1)
    } else {
      const value = hostEnv[name]
      if (value === undefined) throw new CleanroomError('usage', `environment variable ${JSON.stringify(name)} is not set`, {suggestions: [`Set it, or pass a value: -e ${name}=VALUE`]})
      env[name] = value
    }
  }
  return env
}
