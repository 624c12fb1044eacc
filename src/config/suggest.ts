import {pasteable} from '../util/pasteable.js'
import {defaultConfigPath} from './paths.js'

/** A `cleanroom config …` line for "Try this", with `--path` when the file is not the default one, so it works when pasted. */
export function configCommand(command: string, path: string): string {
  return path === defaultConfigPath() ? `cleanroom ${command}` : `cleanroom ${command} --path ${pasteable([path])}`
}
