import {constants} from 'node:fs'
import {open} from 'node:fs/promises'
import {join} from 'node:path'

/** Where a sandbox sees the redacted copy, relative to the workspace. */
export const GIT_CONFIG_PATH = '.git/config'

/** A config bigger than this is not a hand-written one: it is not read (and shown as empty). */
const MAX_CONFIG_BYTES = 1 << 20

/**
 * The repository's `.git/config` as a sandbox may see it: every URL without its
 * userinfo (`https://x-access-token:ghp_…@github.com/` becomes `https://github.com/`),
 * in values, section names and comments; every `[credential…]` section and every
 * `http.extraHeader` (an `Authorization:` header) removed. Everything else is kept
 * byte for byte. A config git itself could not parse is shown as empty.
 */
export function redactGitConfig(text: string): string {
  const entries = scanGitConfig(text)
  if (entries === undefined) return ''
  let section = ''
  let out = ''
  // A dropped entry takes the indentation before it along.
  const drop = () => {
    out = out.replace(/[ \t]*$/, '')
  }
  for (const entry of entries) {
    if (entry.kind === 'header') {
      section = entry.section
      if (section === 'credential') {
        drop()
        continue
      }
      out += entry.subsection !== undefined && hasUserinfo(entry.subsection) ? `[${entry.section} ${quoted(withoutUserinfo(entry.subsection))}]` : entry.raw
    } else if (entry.kind === 'variable') {
      if (section === 'credential' || (section === 'http' && entry.name === 'extraheader')) {
        drop()
        continue
      }
      out += entry.value !== undefined && hasUserinfo(entry.value) ? `${entry.rawName} = ${quoted(withoutUserinfo(entry.value))}\n` : withoutUserinfo(entry.raw)
    } else {
      out += section === 'credential' ? '' : withoutUserinfo(entry.raw)
    }
  }
  return out
}

/**
 * The redacted copy of `workspace`'s `.git/config`, or undefined when the workspace
 * has no such regular file (a worktree's `.git` is a file; a symlinked `.git` or
 * config is not followed) or nothing in it needs redacting.
 */
export async function redactedGitConfigOf(workspace: string): Promise<string | undefined> {
  const text = await readInDirectory(join(workspace, '.git'), 'config', MAX_CONFIG_BYTES)
  if (text === undefined) return undefined
  const redacted = redactGitConfig(text.length > MAX_CONFIG_BYTES ? '' : text.toString('utf8'))
  return redacted === text.toString('utf8') ? undefined : redacted
}

/** Whether `<root>/.git/config` (a regular file in a real directory, no symlink followed) holds exactly `expected`. */
export async function gitConfigHolds(root: string, expected: Buffer): Promise<boolean> {
  const text = await readInDirectory(join(root, '.git'), 'config', expected.length)
  return text !== undefined && text.equals(expected)
}

/**
 * The bytes of the regular file `name` in the directory `dir`, neither of them a
 * symlink: the file is opened through the directory's own fd, so a directory
 * swapped for a symlink after the check leads nowhere else. A file longer than
 * `limit` comes back one byte over it (enough to tell it differs).
 */
async function readInDirectory(dir: string, name: string, limit: number): Promise<Buffer | undefined> {
  const directory = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW).catch(() => undefined)
  if (!directory) return undefined
  try {
    const file = await open(`/proc/self/fd/${directory.fd}/${name}`, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined)
    if (!file) return undefined
    try {
      const stats = await file.stat()
      if (!stats.isFile()) return undefined
      const buffer = Buffer.alloc(Math.min(stats.size, limit + 1))
      const {bytesRead} = await file.read(buffer, 0, buffer.length, 0)
      return buffer.subarray(0, bytesRead)
    } finally {
      await file.close()
    }
  } finally {
    await directory.close()
  }
}

type ConfigEntry =
  | {kind: 'header'; raw: string; section: string; subsection?: string}
  | {kind: 'variable'; raw: string; rawName: string; name: string; value?: string}
  | {kind: 'other'; raw: string}

// scheme://userinfo@ — userinfo up to the first unescaped '@' before any '/', whitespace or quote.
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)(?:[^/\s"@\\]|\\.)*@/gi

function hasUserinfo(text: string): boolean {
  USERINFO.lastIndex = 0
  return USERINFO.test(text)
}

function withoutUserinfo(text: string): string {
  return text.replace(USERINFO, '$1')
}

/** A value as git reads it back from a double-quoted string. */
function quoted(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"').replaceAll('\n', '\\n').replaceAll('\t', '\\t')}"`
}

/**
 * Splits a config into headers, variables (with their continuation lines) and the
 * rest (blank lines, comments), as git's own parser reads it; undefined where git
 * would report a bad config.
 */
function scanGitConfig(text: string): ConfigEntry[] | undefined {
  const entries: ConfigEntry[] = []
  let at = 0
  while (at < text.length) {
    const c = text[at]!
    if (c === '#' || c === ';') {
      const end = lineEnd(text, at)
      entries.push({kind: 'other', raw: text.slice(at, end)})
      at = end
    } else if (/\s/.test(c)) {
      entries.push({kind: 'other', raw: c})
      at++
    } else if (c === '[') {
      const header = scanHeader(text, at)
      if (header === undefined) return undefined
      entries.push(header.entry)
      at = header.end
    } else if (/[A-Za-z]/.test(c)) {
      const variable = scanVariable(text, at)
      if (variable === undefined) return undefined
      entries.push(variable.entry)
      at = variable.end
    } else {
      return undefined
    }
  }
  return entries
}

function lineEnd(text: string, from: number): number {
  const newline = text.indexOf('\n', from)
  return newline === -1 ? text.length : newline + 1
}

function scanHeader(text: string, start: number): {entry: ConfigEntry; end: number} | undefined {
  const name = /^\[([A-Za-z0-9.-]+)/.exec(text.slice(start, start + 1024))
  if (!name) return undefined
  let at = start + name[0].length
  const [section, ...legacy] = name[1]!.split('.')
  let subsection: string | undefined = legacy.length > 0 ? legacy.join('.') : undefined
  if (text[at] === ' ' || text[at] === '\t') {
    while (text[at] === ' ' || text[at] === '\t') at++
    if (text[at] !== '"' || subsection !== undefined) return undefined
    subsection = ''
    for (at++; ; at++) {
      const c = text[at]
      if (c === undefined || c === '\n') return undefined
      if (c === '"') break
      if (c === '\\') at++
      subsection += text[at] ?? ''
    }
    at++
  }
  if (text[at] !== ']') return undefined
  return {entry: {kind: 'header', raw: text.slice(start, at + 1), section: section!.toLowerCase(), subsection}, end: at + 1}
}

function scanVariable(text: string, start: number): {entry: ConfigEntry; end: number} | undefined {
  const rawName = /^[A-Za-z][A-Za-z0-9-]*/.exec(text.slice(start, start + 1024))![0]
  let at = start + rawName.length
  while (text[at] === ' ' || text[at] === '\t') at++
  const entry = (value: string | undefined, end: number) => ({entry: {kind: 'variable' as const, raw: text.slice(start, end), rawName, name: rawName.toLowerCase(), value}, end})
  if (text[at] !== '=') {
    if (at < text.length && text[at] !== '\n' && text[at] !== '#' && text[at] !== ';' && text[at] !== '\r') return undefined
    return entry(undefined, lineEnd(text, at))
  }
  // The value, as git's parse_value (config.c) reads it: quotes, \-escapes, \-newline
  // continuations, comments, whitespace outside quotes dropped at the ends.
  let value = ''
  let spaces = 0
  let inQuote = false
  let inComment = false
  const escaped: Record<string, string> = {t: '\t', b: '\b', n: '\n', '"': '"', '\\': '\\'}
  for (at++; at < text.length; at++) {
    const c = text[at]!
    if (c === '\n') {
      if (inQuote) return undefined
      return entry(value, at + 1)
    }
    if (inComment) continue
    if (!inQuote && /\s/.test(c)) {
      if (value !== '') spaces++
      continue
    }
    if (!inQuote && (c === '#' || c === ';')) {
      inComment = true
      continue
    }
    value += ' '.repeat(spaces)
    spaces = 0
    if (c === '\\') {
      const next = text[++at]
      if (next === '\n') continue
      if (next === undefined || escaped[next] === undefined) return undefined
      value += escaped[next]
    } else if (c === '"') inQuote = !inQuote
    else value += c
  }
  return inQuote ? undefined : entry(value, at)
}
