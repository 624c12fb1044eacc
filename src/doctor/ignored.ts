import {lstat} from 'node:fs/promises'
import {join} from 'node:path'

import type {PublicSandbox} from '../client/client.js'
import {messageOf} from '../errors/index.js'
import {listIgnored} from '../sandbox/ignored.js'
import {findGitRoot} from '../util/repo.js'
import type {Check} from './checks.js'

const LISTED = 20

/**
 * What sandboxes of the repository around `dir` hide, and what they do not: ignored
 * paths git cannot list in a nested repository (hidden whole), and ignored files
 * created on the host after a running sandbox was made (the workspace's lower layer
 * is live, and a sandbox hides what was ignored when it was created).
 */
export async function checkIgnoredFiles(dir: string, sandboxes: readonly PublicSandbox[]): Promise<Check> {
  const name = 'ignored files'
  const root = await findGitRoot(dir)
  if (root === undefined) return {name, status: 'pass', detail: `${dir} is not in a git repository: sandboxes of it hide nothing`}
  let listing
  try {
    listing = await listIgnored(root)
  } catch (error) {
    return {name, status: 'fail', detail: messageOf(error), fix: `Check that git works in ${root}: git status`}
  }
  const nested = listing.nested.length > 0 ? ` (with ${listing.nested.length} nested repositories and submodules: ${shortList(listing.nested)})` : ''
  const problems: string[] = []
  const fixes: string[] = []
  if (listing.unlisted.length > 0) {
    problems.push(`hidden whole, because git cannot list them: ${listing.unlisted.map(({path, why}) => `${path} (${why})`).join('; ')}`)
    fixes.push('make git work in those repositories (same owner as the repository)')
  }
  for (const sandbox of sandboxes) {
    if (sandbox.workspace_source !== root || sandbox.status !== 'ready') continue
    const visible = await createdAfter(root, listing.paths, Date.parse(sandbox.created_at))
    if (visible.length === 0) continue
    problems.push(`sandbox ${sandbox.sandbox_id} shows ${visible.length} ignored paths created on the host after it: ${shortList(visible)}`)
    fixes.push(`recreate it (cleanroom sandbox rm ${sandbox.sandbox_id}), or remove those files from the repository first`)
  }
  const hidden = `${listing.paths.length} ignored paths of ${root} are hidden in a new sandbox${nested}`
  if (problems.length === 0) return {name, status: 'pass', detail: hidden}
  return {name, status: 'warn', detail: `${hidden}; ${problems.join('; ')}`, fix: fixes.join('; ')}
}

/** The ignored paths born (or, where the filesystem keeps no birth time, changed) after `time`. */
async function createdAfter(root: string, paths: readonly string[], time: number): Promise<string[]> {
  const born = await Promise.all(
    paths.map(async (path) => {
      const stats = await lstat(join(root, path)).catch(() => undefined)
      if (!stats) return undefined
      return (stats.birthtimeMs > 0 ? stats.birthtimeMs : stats.ctimeMs) > time ? path : undefined
    }),
  )
  return born.filter((path): path is string => path !== undefined)
}

function shortList(items: readonly string[]): string {
  const shown = items.slice(0, LISTED).join(', ')
  return items.length > LISTED ? `${shown} and ${items.length - LISTED} more` : shown
}
