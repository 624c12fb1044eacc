/**
 * How much a YAML file may ask of the parser. The parser's work and memory
 * grow with values, lines and nesting, not only with bytes, so each is
 * bounded and checked while the file is read (yaml-bounds.ts): a file over a
 * limit costs at most the work up to that limit. This module loads no parser,
 * so a caller can check a file's size before deciding to parse it.
 */
export interface YamlLimits {
  /** What the file is, for messages: "a policy", "a runtime config". */
  what: string
  maxBytes: number
  maxLines: number
  /** Keys and values (scalars, collections), aliases counted as what they stand for. */
  maxValues: number
  /** Collections inside collections. */
  maxDepth: number
  maxAliases: number
}

/** The limits of policies and runtime configs (documented in docs/policy.md, "Limits"). */
export const FILE_LIMITS = {maxBytes: 1 << 20, maxLines: 20_000, maxValues: 20_000, maxDepth: 32, maxAliases: 100} as const
