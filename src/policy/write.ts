import {writeFile} from 'node:fs/promises'
import {join, resolve} from 'node:path'

import {CleanroomError} from '../errors/index.js'
import {displayPath} from '../util/yaml-file.js'
import {POLICY_SEARCH_PLACES, policyFileIn} from './load.js'

/**
 * Writes `text` as `<dir>/cleanroom.yaml` and returns its path. Without `force`
 * an existing policy in `dir` is kept: `cleanroom.yaml`, or `.buildkite/cleanroom.yaml`,
 * which a new `cleanroom.yaml` would silently take the place of.
 */
export async function writePolicyFile(dir: string, text: string, force: boolean): Promise<string> {
  const path = join(resolve(dir), POLICY_SEARCH_PLACES[0])
  const existing = await policyFileIn(dir)
  if (existing !== undefined && !force) throw policyExists(existing)
  try {
    // 'wx' also refuses a file created between the check above and now.
    await writeFile(path, text, {flag: force ? 'w' : 'wx', mode: 0o644})
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') throw policyExists(path)
    throw error
  }
  return path
}

function policyExists(path: string): CleanroomError {
  return new CleanroomError('policy_exists', `a policy already exists at ${displayPath(path)}`, {
    suggestions: ['Keep it and check it with: cleanroom policy validate', 'Replace it with a new cleanroom.yaml: cleanroom policy init --force'],
  })
}
