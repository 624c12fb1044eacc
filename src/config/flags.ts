import {Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {defaultConfigPath} from './paths.js'

/** `--path FILE`: the runtime config to use instead of the default location (`--config-path`, its old spelling on `agent list`, still works). */
export const configPathFlag = Flags.string({
  summary: 'Runtime config file (default: $XDG_CONFIG_HOME/cleanroom/config.yaml)',
  helpValue: 'FILE',
  aliases: ['config-path'],
})

/** The config path a command works on: `--path` resolved against the working directory, or the default. */
export function resolveConfigPath(flag: string | undefined): string {
  return flag === undefined ? defaultConfigPath() : resolve(flag)
}
