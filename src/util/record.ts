/** Plain object check for parsed values (YAML, JSON): not null, not an array. Kept apart from yaml-file.ts so code that runs at every start need not load the YAML parser. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
