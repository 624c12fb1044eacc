import {CleanroomError} from '../errors/index.js'
import {readBoundedFile} from '../util/bounded-file.js'
import {FILE_LIMITS} from '../util/file-limits.js'
import {defaultConfigPath} from './paths.js'
import {DEFAULT_RUNTIME_CONFIG, type RuntimeConfig} from './schema.js'

export interface LoadedRuntimeConfig {
  path: string
  /** False when no file exists at `path` and the defaults are in force. */
  exists: boolean
  config: RuntimeConfig
}

/**
 * Loads and strictly validates the runtime config; a missing file means the
 * defaults. A file over the size limit, or one that is not a regular file, is
 * refused before it is read.
 */
export async function loadRuntimeConfig(path: string = defaultConfigPath()): Promise<LoadedRuntimeConfig> {
  const read = await readBoundedFile(path, FILE_LIMITS.maxBytes).catch((error: unknown) => {
    throw new CleanroomError('config_invalid', `cannot read runtime config ${path}: ${(error as Error).message}`, {cause: error})
  })
  if (read.kind === 'missing') return {path, exists: false, config: structuredClone(DEFAULT_RUNTIME_CONFIG)}
  if (read.kind === 'not-a-file') {
    throw new CleanroomError('config_invalid', `runtime config ${path} is ${read.type}, not a file`, {
      suggestions: ['Remove it or point --path at a file'],
    })
  }
  // The YAML parser is loaded only when there is a file: most machines have none, and exec starts faster without it.
  const {parseRuntimeConfigBytes} = await import('./parse.js')
  return {path, exists: true, config: parseRuntimeConfigBytes(path, read.kind === 'bytes' ? read.bytes : read.size)}
}
