import {isRecord} from '../util/record.js'

/**
 * What a plugin's package.json and files say about code. An agent plugin is
 * data; everything listed here is a way oclif or npm would run, or find, code
 * in it. All pure: the callers read the files.
 */

/** `oclif` keys that make oclif import a module or load another package. */
const CODE_BEARING_OCLIF_KEYS = ['commands', 'hooks', 'plugins', 'devPlugins', 'jitPlugins', 'helpClass'] as const

/** package.json fields that point at code: where oclif finds the plugin's root, or what npm links as commands. */
const CODE_BEARING_FIELDS = ['main', 'exports', 'bin'] as const

/** Fields that make npm install other packages next to the plugin. */
const DEPENDENCY_FIELDS = ['dependencies', 'optionalDependencies', 'peerDependencies', 'bundleDependencies', 'bundledDependencies'] as const

/** Files oclif reads commands from when present, even when package.json names none. */
const OCLIF_MANIFEST_FILES = ['oclif.manifest.json', '.oclif.manifest.json'] as const

/** Scripts npm would run while installing (cleanroom never lets it). */
const INSTALL_SCRIPTS = ['preinstall', 'install', 'postinstall', 'prepublish', 'preprepare', 'prepare', 'postprepare', 'dependencies'] as const

/** Why a package.json cannot be an agent plugin at all, or undefined when it can. */
export function notAPluginProblem(pjson: Record<string, unknown>): string | undefined {
  if (!('oclif' in pjson)) return 'its package.json has no "oclif" key (an agent plugin needs "oclif": {} next to its "cleanroom": {"agent": {…}} block)'
  if (!isRecord(pjson.oclif)) return 'its package.json "oclif" key is not an object (an agent plugin needs "oclif": {})'
  return undefined
}

/**
 * Each way the package would run code inside cleanroom, one short text per
 * declaration (`oclif.hooks.init`, `main`, `dependencies: left-pad`,
 * `oclif.manifest.json`); empty for a data-only plugin. `hasFile` answers for
 * paths relative to the package root.
 */
export function codeEntries(pjson: Record<string, unknown>, hasFile: (path: string) => boolean): string[] {
  const found: string[] = []
  const oclif = isRecord(pjson.oclif) ? pjson.oclif : {}
  for (const key of CODE_BEARING_OCLIF_KEYS) {
    if (!(key in oclif) || isEmpty(oclif[key])) continue
    const value = oclif[key]
    found.push(key === 'hooks' && isRecord(value) ? `oclif.hooks (${Object.keys(value).join(', ')})` : `oclif.${key}`)
  }
  for (const field of CODE_BEARING_FIELDS) {
    if (field in pjson && !isEmpty(pjson[field])) found.push(field)
  }
  if (isRecord(pjson.directories) && 'bin' in pjson.directories) found.push('directories.bin')
  for (const field of DEPENDENCY_FIELDS) {
    const value = pjson[field]
    if (isEmpty(value)) continue
    const names = Array.isArray(value) ? value.map(String) : isRecord(value) ? Object.keys(value) : [String(value)]
    found.push(`${field}: ${names.join(', ')}`)
  }
  for (const file of OCLIF_MANIFEST_FILES) if (hasFile(file)) found.push(`${file} (commands oclif would load)`)
  return found
}

/** The install scripts a package declares (npm's implicit `node-gyp rebuild` for binding.gyp included). */
export function installScripts(pjson: Record<string, unknown>, hasFile: (path: string) => boolean): string[] {
  const scripts = isRecord(pjson.scripts) ? pjson.scripts : {}
  const declared: string[] = INSTALL_SCRIPTS.filter((name) => typeof scripts[name] === 'string')
  if (hasFile('binding.gyp') && !declared.includes('install') && !declared.includes('preinstall')) declared.push('install (node-gyp rebuild for binding.gyp)')
  return declared
}

function isEmpty(value: unknown): boolean {
  if (value === undefined || value === null || value === false || value === '') return true
  if (Array.isArray(value)) return value.length === 0
  return isRecord(value) && Object.keys(value).length === 0
}
