import {describeValue} from '../util/describe-value.js'
import type {PathSegment, YamlFile} from '../util/yaml-file.js'

/**
 * One setting of the runtime config, declared once where it belongs (a backend's
 * settings: `src/sandbox/backends/<name>/descriptor.ts`): its default, the comment
 * `config init` writes above it, and how a value from config.yaml is checked.
 */
export interface Setting<T> {
  default: T
  /** The comment above the key in the template `config init` writes. */
  description: string
  /** The value, or undefined after reporting on `file` what is wrong with it. */
  parse(file: YamlFile, path: PathSegment[], value: unknown): T | undefined
  /** The value as config.yaml writes it (sizes in binary units), when that is not the value itself. */
  shown?(value: T): unknown
  /** For a setting that is a mapping: the comment above each of its keys. */
  notes?: Record<string, string>
}

export type SettingsSchema = Record<string, Setting<unknown>>

/** The values a schema declares, by key: `{bwrap_path: string}` for `{bwrap_path: Setting<string>}`. */
export type SettingsOf<S extends SettingsSchema> = {[K in keyof S]: S[K] extends Setting<infer T> ? T : never}

/** A program: a name looked up on PATH, or an absolute path. */
export function programSetting(name: string, description: string): Setting<string> {
  return {default: name, description, parse: programPath}
}

/** One of a few words. */
export function choiceSetting<const T extends string>(choices: readonly T[], fallback: T, description: string): Setting<T> {
  return {default: fallback, description, parse: (file, path, value) => oneOf(file, path, value, choices)}
}

export function defaultsOf<S extends SettingsSchema>(schema: S): SettingsOf<S> {
  return Object.fromEntries(Object.entries(schema).map(([key, setting]) => [key, structuredClone(setting.default)])) as SettingsOf<S>
}

/** Sets in `target` each setting of `schema` that `values` gives and is valid; what is not is reported on `file`. */
export function parseSettings(file: YamlFile, path: PathSegment[], values: Record<string, unknown>, schema: SettingsSchema, target: Record<string, unknown>): void {
  for (const [key, setting] of Object.entries(schema)) {
    const value = values[key]
    if (value === undefined || value === null) continue
    const parsed = setting.parse(file, [...path, key], value)
    if (parsed !== undefined) target[key] = parsed
  }
}

export function oneOf<const T extends string>(file: YamlFile, path: PathSegment[], value: unknown, allowed: readonly T[]): T | undefined {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value.trim())) return value.trim() as T
  file.report(path, `unsupported value ${describeValue(value)} (expected ${allowed.join(' or ')})`)
  return undefined
}

function programPath(file: YamlFile, path: PathSegment[], value: unknown): string | undefined {
  if (typeof value !== 'string' || value.trim() === '' || value.includes('\0')) {
    file.report(path, 'must be a program name or an absolute path')
    return undefined
  }
  const trimmed = value.trim()
  if (trimmed.includes('/') && !trimmed.startsWith('/')) {
    file.report(path, `"${trimmed}" must be a program name looked up on PATH or an absolute path`)
    return undefined
  }
  return trimmed
}
