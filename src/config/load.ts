import {readFile} from 'node:fs/promises'

import {CleanroomError} from '../errors/index.js'
import {defaultConfigPath} from './paths.js'
import {DEFAULT_RUNTIME_CONFIG, type RuntimeConfig} from './schema.js'

export interface LoadedRuntimeConfig {
  path: string
  /** False when no file exists at `path` and the defaults are in force. */
  exists: boolean
  config: RuntimeConfig
}

/** Loads and strictly validates the runtime config; a missing file means the defaults. */
export async function loadRuntimeConfig(path: string = defaultConfigPath()): Promise<LoadedRuntimeConfig> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return {path, exists: false, config: structuredClone(DEFAULT_RUNTIME_CONFIG)}
    if (code === 'EISDIR') {
      throw new CleanroomError('config_invalid', `runtime config ${path} is a directory, not a file`, {
        suggestions: ['Remove the directory or point --path at a file'],
      })
    }
    throw new CleanroomError('config_invalid', `cannot read runtime config ${path}: ${(error as Error).message}`, {cause: error})
  }
  // The YAML parser is loaded only when there is a file: most machines have none, and exec starts faster without it.
  const {parseRuntimeConfigText} = await import('./parse.js')
  return {path, exists: true, config: parseRuntimeConfigText(path, text)}
}
