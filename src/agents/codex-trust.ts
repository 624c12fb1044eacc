/**
 * Codex asks whether to trust a project before working in it. Inside a sandbox the
 * project is always `/workspace`, so its config.toml is given the table that answers yes.
 */
const WORKSPACE_TRUST = '[projects."/workspace"]\ntrust_level = "trusted"\n'

/** A table header line for `/workspace` in either quoting, with TOML's optional whitespace and a trailing comment. */
const WORKSPACE_TABLE_HEADER = /^[ \t]*\[[ \t]*projects[ \t]*\.[ \t]*(?:"\/workspace"|'\/workspace')[ \t]*\][ \t]*(?:#.*)?$/m

/**
 * Appends the `/workspace` trust table to a Codex config.toml unless the file already
 * has a `[projects."/workspace"]` (or single-quoted) table; every existing byte is kept.
 * Applying it twice gives the same bytes as applying it once.
 */
export function applyCodexTrust(toml: Buffer): Buffer {
  // latin1 maps every byte to one character, so matching never trips over invalid UTF-8.
  const text = toml.toString('latin1').replaceAll('\r', '')
  if (WORKSPACE_TABLE_HEADER.test(text)) return toml

  let separator = ''
  if (toml.length > 0) separator = toml.at(-1) === 0x0a ? '\n' : '\n\n'
  return Buffer.concat([toml, Buffer.from(separator + WORKSPACE_TRUST)])
}
