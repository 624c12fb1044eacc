import type {PathSegment, YamlFile} from './yaml-file.js'

/** Plain object check for parsed values (YAML, JSON): not null, not an array. Kept apart from yaml-file.ts so code that runs at every start need not load the YAML parser. */
export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

/** Reports every key of `value` not in `allowed` as unknown, pointing at the key. */
export function reportUnknownKeys(
  file: YamlFile,
  path: readonly PathSegment[],
  value: Record<string, unknown>,
  allowed: readonly string[],
): void {
  for (const key of Object.keys(value)) {
    if (!allowed.includes(key)) {
      file.report([...path, key], `unknown key (expected one of: ${allowed.join(', ')})`, 'key')
    }
  }
}
