/**
 * What follows the first `--` of a command's raw argv, untouched and in order (a
 * second `--` and flags such as `--json` included); nothing when there is no `--`.
 * `exec` and `console` take the command to run from here: oclif's parsed argv cannot
 * be used, since it re-sorts tokens by their first occurrence, so repeated tokens move.
 */
export function afterDashDash(rawArgv: readonly string[]): string[] {
  const dashDash = rawArgv.indexOf('--')
  return dashDash < 0 ? [] : rawArgv.slice(dashDash + 1)
}
