/** A flag as `oclif manifest` records it in oclif.manifest.json. */
export interface ManifestFlag {
  name: string
  char?: string
  type: 'boolean' | 'option'
  multiple?: boolean
  options?: string[]
  aliases?: string[]
  charAliases?: string[]
}

export type ParsedFlags = Record<string, string | boolean | string[]>

/**
 * Parses the flags of a command up to `--` the way oclif would, for the forms
 * that cannot mean two things: `--name`, `--name value`, `--name=value`,
 * `-c value`, `-c=value`. Anything else — no `--`, a word before it, an unknown
 * or repeated flag, `--help`, a value that looks like a flag or is not among a
 * flag's options, `--no-…` — gives undefined, and oclif parses the line instead,
 * with its own help and errors.
 */
export function parseFlags(argv: readonly string[], flags: Record<string, ManifestFlag>): ParsedFlags | undefined {
  const end = argv.indexOf('--')
  if (end === -1) return undefined
  const byChar = new Map(Object.values(flags).flatMap((flag) => (flag.char ? [[flag.char, flag] as const] : [])))
  const parsed: ParsedFlags = {}
  for (let i = 0; i < end; i++) {
    const token = argv[i]!
    const [spelled, inline] = splitInline(token)
    const flag = spelled.startsWith('--') ? flags[spelled.slice(2)] : spelled.length === 2 && spelled[0] === '-' ? byChar.get(spelled[1]!) : undefined
    if (flag === undefined) return undefined
    if (flag.type === 'boolean') {
      if (inline !== undefined || parsed[flag.name] !== undefined) return undefined
      parsed[flag.name] = true
      continue
    }
    const value = inline ?? (i + 1 < end ? argv[++i] : undefined)
    if (value === undefined || value.startsWith('-')) return undefined
    if (flag.options && !flag.options.includes(value)) return undefined
    const previous = parsed[flag.name]
    if (flag.multiple) parsed[flag.name] = [...((previous as string[] | undefined) ?? []), value]
    else if (previous === undefined) parsed[flag.name] = value
    else return undefined
  }
  return parsed
}

function splitInline(token: string): [string, string | undefined] {
  const equals = token.indexOf('=')
  return token.startsWith('-') && equals > 0 ? [token.slice(0, equals), token.slice(equals + 1)] : [token, undefined]
}
