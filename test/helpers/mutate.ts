import {parse, stringify} from 'yaml'

/**
 * Deterministic mutations of YAML and JSON documents for the parsing fuzz
 * tests: every case comes from a seed, so a failure names the seed and the
 * case and can be run again exactly.
 */

/** mulberry32: a small seeded PRNG, good enough to pick mutations. */
export function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

export interface Mutant {
  /** What was done, e.g. `wrong type at sandbox.network.allow[0].ports: "x"`. */
  name: string
  bytes: Buffer
}

type Rng = () => number
type Json = null | boolean | number | string | Json[] | {[key: string]: Json}

const pick = <T>(rng: Rng, items: readonly T[]): T => items[Math.floor(rng() * items.length)]!

/** Every path to a value in `doc`, the root included. */
function paths(doc: Json, prefix: (string | number)[] = []): (string | number)[][] {
  const out = [prefix]
  if (Array.isArray(doc)) doc.forEach((item, i) => out.push(...paths(item, [...prefix, i])))
  else if (doc !== null && typeof doc === 'object') for (const [key, value] of Object.entries(doc)) out.push(...paths(value, [...prefix, key]))
  return out
}

function getAt(doc: Json, path: readonly (string | number)[]): Json {
  return path.reduce<Json>((node, seg) => (node as Record<string | number, Json>)[seg]!, doc)
}

function isMap(value: Json): value is {[key: string]: Json} {
  return value !== null && typeof value === 'object' && !Array.isArray(value)
}

function setAt(doc: Json, path: readonly (string | number)[], value: Json): Json {
  if (path.length === 0) return value
  const copy = structuredClone(doc) as Record<string | number, Json>
  let node = copy
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, Json>
  node[path.at(-1)!] = value
  return copy
}

function nested(depth: number, leaf: Json, map: boolean): Json {
  let value = leaf
  for (let i = 0; i < depth; i++) value = map ? {k: value} : [value]
  return value
}

/** Values of the wrong type or out of range, for any field. */
const ODD_VALUES: Json[] = [null, true, false, 0, -1, 1e308, -1e308, 2 ** 53 + 2, 65_536, 1.5, '', ' ', 'x'.repeat(300), '443', '8GiB', '*', [], [null], {}, {'': ''}, ['a', 1, true], {host: 1, ports: 'a'}]

/** One structural mutation of a parsed document. */
function mutateTree(rng: Rng, doc: Json): {name: string; doc: Json} {
  const all = paths(doc)
  const path = pick(rng, all)
  const where = path.length === 0 ? '(root)' : path.join('.')
  switch (Math.floor(rng() * 7)) {
    case 0: {
      const value = pick(rng, ODD_VALUES)
      return {name: `odd value at ${where}: ${JSON.stringify(value).slice(0, 40)}`, doc: setAt(doc, path, value)}
    }
    case 1: {
      const depth = pick(rng, [20, 33, 40, 200, 5000])
      return {name: `nesting ${depth} deep at ${where}`, doc: setAt(doc, path, nested(depth, 'x', rng() < 0.5))}
    }
    case 2: {
      const count = pick(rng, [3, 500, 25_000])
      const extra = Object.fromEntries(Array.from({length: count}, (_, i) => [`unknown_${i}`, i]))
      const target = getAt(doc, path)
      return {name: `${count} unknown keys in ${where}`, doc: setAt(doc, path, {...(isMap(target) ? target : {}), ...extra})}
    }
    case 3: {
      const item = getAt(doc, path)
      // Big enough to pass the limits, small enough to write: at most about 2 MB of text.
      const count = Math.min(pick(rng, [2, 1100, 30_000]), Math.max(2, Math.floor(2_000_000 / (JSON.stringify(item) ?? 'null').length)))
      return {name: `${where} repeated ${count} times in a list`, doc: setAt(doc, path, Array.from({length: count}, () => item))}
    }
    case 4: {
      const length = pick(rng, [70_000, 1_100_000])
      return {name: `a ${length}-character string at ${where}`, doc: setAt(doc, path, 'a'.repeat(length))}
    }
    case 5: {
      const keys = ['version', 'sandbox', 'network', 'allow', 'deny', 'ports', 'host', 'resources', 'memory', 'dependencies', 'services', 'blocks', 'outputs', 'dirs', 'run', 'before', 'repository', 'expose', 'https', 'routes', 'agents', 'backends', 'command', 'env']
      const key = pick(rng, keys)
      const value = pick(rng, ODD_VALUES)
      const target = getAt(doc, path)
      return {name: `key ${key}: ${JSON.stringify(value).slice(0, 40)} in ${where}`, doc: isMap(target) ? setAt(doc, [...path, key], value) : setAt(doc, path, {[key]: value})}
    }
    default: {
      const value = pick(rng, [2 ** 64, -0, 1e-300, Number.MAX_SAFE_INTEGER, '0x10', '1e3', 'yes', 'NO', '~'])
      return {name: `edge number or word at ${where}: ${String(value)}`, doc: setAt(doc, path, value)}
    }
  }
}

/** One mutation of a document's bytes. */
function mutateText(rng: Rng, text: string, kind: 'yaml' | 'json'): Mutant {
  const bytes = Buffer.from(text)
  const at = Math.floor(rng() * (bytes.length + 1))
  const splice = (insert: Buffer | string, name: string): Mutant => ({name, bytes: Buffer.concat([bytes.subarray(0, at), Buffer.from(insert), bytes.subarray(at)])})
  const choices: (() => Mutant)[] = [
    () => splice(Buffer.from([pick(rng, [0xff, 0xfe, 0x80, 0xc0])]), `invalid UTF-8 byte at offset ${at}`),
    () => splice(Buffer.from(pick(rng, [[0xc3, 0x28], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80]])), `ill-formed UTF-8 sequence at offset ${at}`),
    () => splice(Buffer.from([0]), `NUL at offset ${at}`),
    () => splice(Buffer.from([pick(rng, [0x1b, 0x07, 0x7f, 0x0c])]), `control character at offset ${at}`),
    () => ({name: 'UTF-8 byte order mark at the start', bytes: Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), bytes])}),
    () => splice(Buffer.from([0xef, 0xbb, 0xbf]), `byte order mark at offset ${at}`),
    () => ({name: 'UTF-16 with a byte order mark', bytes: Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, 'utf16le')])}),
    () => ({name: `truncated at offset ${at}`, bytes: bytes.subarray(0, at)}),
    () => {
      const flipped = Buffer.from(bytes)
      if (flipped.length > 0) flipped[at % flipped.length] = Math.floor(rng() * 256)
      return {name: `byte at offset ${at % Math.max(1, bytes.length)} replaced`, bytes: flipped}
    },
    () => ({name: '10 MB file', bytes: Buffer.concat([bytes, Buffer.from(kind === 'yaml' ? `\n#${'x'.repeat(10_000_000)}\n` : ' '.repeat(10_000_000))])}),
    () => ({name: '1 MiB of opening brackets', bytes: Buffer.from('['.repeat(1 << 20))}),
  ]
  if (kind === 'yaml') {
    choices.push(
      () => ({name: 'alias bomb', bytes: Buffer.from(`${aliasBomb()}${text}`)}),
      () => ({name: 'alias bomb used as the allow list', bytes: Buffer.from(`${aliasBomb()}version: 1\nsandbox: {network: {allow: *a8}}\n`)}),
      () => splice(`\nextra: *nowhere\n`, `undefined alias at offset ${at}`),
      () => ({name: 'self-referencing alias', bytes: Buffer.from(`${text}\nloop: &loop [*loop]\n`)}),
      () => ({name: '25,000 comment lines', bytes: Buffer.from(`${'# line\n'.repeat(25_000)}${text}`)}),
      () => ({name: 'a second document', bytes: Buffer.from(`${text}\n---\n${text}`)}),
      () => ({name: '10,000 documents', bytes: Buffer.from(`${text}${'\n---\n'.repeat(10_000)}`)}),
      () => ({name: 'tab indentation', bytes: Buffer.from(text.replaceAll('  ', '\t'))}),
      () => ({name: 'key "1" and 1', bytes: Buffer.from(`${text}\n"1": a\n1: b\n`)}),
      () => ({name: 'complex key', bytes: Buffer.from(`${text}\n? [a, b]\n: c\n`)}),
      () => ({name: 'merge key and anchors', bytes: Buffer.from(`${text}\nbase: &base {a: 1}\nother: {<<: *base}\n`)}),
      () => ({name: '%YAML 1.1 directive', bytes: Buffer.from(`%YAML 1.1\n---\n${text}`)}),
      () => ({name: 'tagged values', bytes: Buffer.from(`${text}\nodd: !!binary aGVsbG8=\nset: !!set {a, b}\ncustom: !foo bar\n`)}),
    )
  }
  return pick(rng, choices)()
}

/** Nine levels of nine aliases each: 9^9 values if expanded. */
function aliasBomb(): string {
  const lines = ['a0: &a0 [x, x, x, x, x, x, x, x, x]']
  for (let i = 1; i < 9; i++) lines.push(`a${i}: &a${i} [${Array.from({length: 9}, () => `*a${i - 1}`).join(', ')}]`)
  return `${lines.join('\n')}\n`
}

/**
 * `count` mutants of `base` (a YAML or JSON text), half structural and half on
 * the bytes, made one at a time as they are iterated (some are 10 MB).
 */
export function* mutants(seed: number, base: string, kind: 'yaml' | 'json', count: number): Generator<Mutant> {
  const rng = random(seed)
  const doc = (kind === 'json' ? JSON.parse(base) : parse(base)) as Json
  for (let i = 0; i < count; i++) {
    if (rng() < 0.5) {
      const {name, doc: mutated} = mutateTree(rng, doc)
      // JSON.stringify and yaml's stringify recurse: very deep values are written by hand.
      yield {name, bytes: Buffer.from(kind === 'json' ? jsonText(mutated) : yamlText(mutated))}
    } else {
      yield mutateText(rng, base, kind)
    }
  }
}

function yamlText(doc: Json): string {
  try {
    return stringify(doc, {lineWidth: 0, aliasDuplicateObjects: false})
  } catch {
    return `value: ${jsonText(doc)}\n`
  }
}

/** JSON text of `doc` without recursion limits: deep values become a flat string of brackets. */
function jsonText(doc: Json): string {
  try {
    return JSON.stringify(doc)
  } catch {
    return `{"deep": ${'['.repeat(100_000)}${']'.repeat(100_000)}}`
  }
}
