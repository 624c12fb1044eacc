import {resolve} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {NPM_PACKAGE_PATTERN} from '../agents/spec.js'
import {CleanroomError} from '../errors/index.js'

/** Where a plugin comes from, as `cleanroom plugins install` was given it. */
export type PluginSource =
  | {kind: 'npm'; name: string; tag: string; label: string}
  | {
      kind: 'url'
      /** As given, with a `file:` path made absolute: what is recorded for plugins update. */
      url: string
      /** What npm is asked for: a `file:` source with its path made absolute. */
      spec: string
      label: string
    }

export interface SourceOptions {
  /** What a relative `file:` path is relative to. */
  cwd: string
  /** The friendly-name form: `acme` is `@<scope>/<prefix>-acme` when that exists on the registry. */
  friendly?: {scope: string; prefix: string; exists: (name: string) => Promise<boolean>}
}

/**
 * Reads a plugin argument the way @oclif/plugin-plugins does: a git URL, a
 * `file:` URL or path, a GitHub `owner/repo`, a scoped or unscoped npm name
 * with an optional `@tag`, or a friendly name. A bare path is not a source:
 * `/tmp/x.tgz` would be read as a GitHub slug, so it is refused with the fix.
 */
export async function parsePluginSource(input: string, options: SourceOptions): Promise<PluginSource> {
  if (input.startsWith('file:')) {
    const path = resolve(options.cwd, input.startsWith('file://') ? fileURLToPath(input) : input.slice('file:'.length))
    // Recorded absolute, so plugins update finds it from any directory.
    return {kind: 'url', url: pathToFileURL(path).href, spec: `file:${path}`, label: input}
  }
  if (input.startsWith('git+') || input.endsWith('.git') || /^[a-z][a-z0-9+.-]*:/i.test(input)) return {kind: 'url', url: input, spec: input, label: input}
  if (input.startsWith('/') || input.startsWith('.')) {
    throw new CleanroomError('usage', `${input} is a path; give a plugin tarball or directory as a file: URL`, {
      suggestions: [`cleanroom plugins install file://${resolve(options.cwd, input)}`],
    })
  }
  if (!input.startsWith('@') && input.includes('/')) return {kind: 'url', url: `github:${input}`, spec: `github:${input}`, label: input}

  const at = input.indexOf('@', 1)
  let name = at < 0 ? input : input.slice(0, at)
  const tag = at < 0 ? 'latest' : input.slice(at + 1)
  if (!NPM_PACKAGE_PATTERN.test(name) || tag === '') {
    throw new CleanroomError('usage', `${JSON.stringify(input)} is not an npm package name (name or name@tag), a file: URL or a git URL`)
  }
  if (!name.startsWith('@') && options.friendly) {
    const expanded = `@${options.friendly.scope}/${options.friendly.prefix}-${name}`
    if (await options.friendly.exists(expanded)) name = expanded
  }
  return {kind: 'npm', name, tag, label: `${name}@${tag}`}
}

/** What npm is asked to fetch for a source. */
export function npmSpec(source: PluginSource): string {
  return source.kind === 'npm' ? `${source.name}@${source.tag}` : source.spec
}
