import {createHash} from 'node:crypto'
import {existsSync} from 'node:fs'
import {readFile} from 'node:fs/promises'
import {join} from 'node:path'

import {NPM_PACKAGE_PATTERN} from '../agents/spec.js'
import {messageOf} from '../errors/index.js'
import {isRecord} from '../util/record.js'
import {codeEntries, notAPluginProblem} from './code.js'
import type {PluginEntry} from './state.js'

/** An installed or linked plugin that may be loaded, and what it was found to be. */
export interface VettedPlugin {
  entry: PluginEntry
  /** Its directory: `<data dir>/node_modules/<name>`, or the linked directory. */
  root: string
  pjson: Record<string, unknown>
  /** The code it declares (empty for a data-only plugin), allowed by --allow-code when not empty. */
  code: string[]
}

/** A refusal says whether the plugin declares code that was not allowed, or cannot be a plugin as it is. */
export type Vetting = {ok: true; plugin: VettedPlugin} | {ok: false; reason: string; code: boolean}

/** Far above any package.json of a plugin; oclif reads it whole, and so does this check. */
const MAX_INSTALLED_PACKAGE_JSON_BYTES = 4 * 1024 * 1024

/** npm's own limit on a package name's length. */
const MAX_PACKAGE_NAME_LENGTH = 214

export function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex')
}

/** Why `name` cannot be a plugin's package name here, or undefined when it can. */
export function pluginNameProblem(name: string, shipped: ReadonlySet<string>): string | undefined {
  if (name.length > MAX_PACKAGE_NAME_LENGTH || !NPM_PACKAGE_PATTERN.test(name)) return `${JSON.stringify(name)} is not an npm package name`
  if (shipped.has(name)) return `${name} is the name of a plugin that ships with cleanroom, which a plugin may not take over`
  return undefined
}

/** The directory of an entry's package: where npm installed it, or the linked directory. */
export function pluginRoot(entry: PluginEntry, dataDir: string): string {
  return entry.type === 'link' ? entry.root : join(dataDir, 'node_modules', entry.name)
}

/**
 * Decides whether an installed or linked plugin may be loaded, from its files
 * alone (nothing of it runs here). A data-only plugin may. One that declares
 * code (see code.ts) may only when it was installed or linked with
 * --allow-code for the exact package.json it has now: a data plugin edited on
 * disk to add a hook, a code plugin installed before cleanroom checked, or an
 * allowed one whose package.json changed since, is refused, with the reason.
 * `shipped` names the plugins that come with cleanroom, which none may replace.
 */
export async function vetPlugin(entry: PluginEntry, dataDir: string, shipped: ReadonlySet<string>): Promise<Vetting> {
  const nameProblem = pluginNameProblem(entry.name, shipped)
  if (nameProblem) return {ok: false, reason: nameProblem, code: false}
  const root = pluginRoot(entry, dataDir)

  let bytes: Buffer
  let pjson: Record<string, unknown>
  try {
    bytes = await readFile(join(root, 'package.json'))
    if (bytes.length > MAX_INSTALLED_PACKAGE_JSON_BYTES) throw new Error(`it is ${bytes.length} bytes`)
    const parsed: unknown = JSON.parse(bytes.toString('utf8'))
    if (!isRecord(parsed)) throw new Error('it is not a JSON object')
    pjson = parsed
  } catch (error) {
    return {ok: false, reason: `cannot read its package.json in ${root}: ${messageOf(error)}`, code: false}
  }
  const notAPlugin = notAPluginProblem(pjson)
  if (notAPlugin) return {ok: false, reason: notAPlugin, code: false}
  if (pjson.name !== entry.name) return {ok: false, reason: `its package.json in ${root} names it ${JSON.stringify(pjson.name)}`, code: false}

  const code = codeEntries(pjson, (path) => existsSync(join(root, path)))
  if (code.length > 0) {
    const allowed = entry.cleanroom?.allow_code
    if (allowed === undefined) return {ok: false, reason: `it declares code that oclif would run in cleanroom (${code.join('; ')}), and it was not added with --allow-code`, code: true}
    if (allowed.package_json_sha256 !== sha256(bytes)) {
      return {ok: false, reason: `its package.json changed since its code was allowed with --allow-code (it declares: ${code.join('; ')})`, code: true}
    }
  }
  return {ok: true, plugin: {entry, root, pjson, code}}
}
