import {mkdir, stat, writeFile} from 'node:fs/promises'
import {dirname} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {configCommand} from './suggest.js'

/** Writes a new runtime config; an existing file is kept unless `force`. */
export async function writeRuntimeConfig(path: string, text: string, force: boolean): Promise<void> {
  const existing = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined
    throw error
  })
  if (existing?.isDirectory()) {
    throw new CleanroomError('config_exists', `runtime config path ${path} is a directory`, {
      suggestions: ['Choose a file path with --path'],
    })
  }
  if (existing && !force) {
    throw new CleanroomError('config_exists', `runtime config already exists at ${path}`, {
      suggestions: [`Keep it and check it with: ${configCommand('config validate', path)}`, `Overwrite it with: ${configCommand('config init', path)} --force`],
    })
  }
  await mkdir(dirname(path), {recursive: true, mode: 0o755})
  await writeFile(path, text, {mode: 0o644})
}
