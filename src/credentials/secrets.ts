import {execFile} from 'node:child_process'
import {readFile} from 'node:fs/promises'

import type {WireSecretSource} from './wire.js'

const COMMAND_TIMEOUT_MS = 15_000
const COMMAND_OUTPUT_LIMIT = 64 * 1024

export interface ResolvedSecret {
  value: string
  /** Where it came from, for messages: never the value. */
  from: string
}

/** Why no source of a route had its secret, for the 503 the sandbox gets and the audit log. */
export class SecretUnavailable extends Error {}

/**
 * Reads routes' secrets on the daemon's side: provided values as they are,
 * host files each time (a key rotated on the host is used at once), host
 * commands on first use and then from a cache until their TTL runs out, so
 * `gh auth token` runs once per quarter hour, not per request. Commands come
 * only from the user's runtime config.
 */
export class SecretResolver {
  private readonly commands = new Map<string, {value: string; until: number} | Promise<string>>()

  async resolve(sources: readonly WireSecretSource[]): Promise<ResolvedSecret> {
    const missing: string[] = []
    for (const source of sources) {
      if ('provided' in source) return {value: source.provided, from: source.from}
      if ('file' in source) {
        const value = await fileSecret(source.file, source.field)
        if (value !== undefined) return {value, from: source.field ? `${source.file} (${source.field})` : source.file}
        missing.push(source.field ? `${source.field} in ${source.file}` : source.file)
        continue
      }
      return {value: await this.commandSecret(source.command, source.ttl_seconds), from: `command ${source.command.join(' ')}`}
    }
    throw new SecretUnavailable(missing.length > 0 ? `no secret: ${missing.join(', ')} not found` : 'no secret was provided')
  }

  /** Whether a source can be expected to give a secret now (files checked, commands assumed). */
  async available(sources: readonly WireSecretSource[]): Promise<string | undefined> {
    for (const source of sources) {
      if ('provided' in source) return source.from
      if ('command' in source) return `command ${source.command.join(' ')} (run on first use)`
      if ((await fileSecret(source.file, source.field)) !== undefined) return source.field ? `${source.file} (${source.field})` : source.file
    }
    return undefined
  }

  private async commandSecret(argv: readonly string[], ttlSeconds: number): Promise<string> {
    const key = JSON.stringify(argv)
    const cached = this.commands.get(key)
    if (cached instanceof Promise) return cached
    if (cached && cached.until > Date.now()) return cached.value
    const running = runCommand(argv).then(
      (value) => {
        this.commands.set(key, {value, until: Date.now() + ttlSeconds * 1000})
        return value
      },
      (error: unknown) => {
        this.commands.delete(key)
        throw error
      },
    )
    this.commands.set(key, running)
    return running
  }
}

async function fileSecret(path: string, field: string | undefined): Promise<string | undefined> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  if (field === undefined) return text.trim() === '' ? undefined : text.trim()
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch {
    return undefined
  }
  const found = jsonAt(value, field)
  return typeof found === 'string' && found.trim() !== '' ? found.trim() : undefined
}

/** The value at a dotted path of a JSON value. */
export function jsonAt(value: unknown, path: string): unknown {
  let node = value
  for (const key of path.split('.')) {
    if (typeof node !== 'object' || node === null || Array.isArray(node)) return undefined
    node = (node as Record<string, unknown>)[key]
  }
  return node
}

function runCommand(argv: readonly string[]): Promise<string> {
  const [program, ...args] = argv
  return new Promise((resolve, reject) => {
    execFile(program!, args, {timeout: COMMAND_TIMEOUT_MS, maxBuffer: COMMAND_OUTPUT_LIMIT, encoding: 'utf8'}, (error, stdout, stderr) => {
      const value = stdout.trim()
      if (error || value === '' || value.includes('\n')) {
        const why = error ? (stderr.trim().split('\n')[0] ?? error.message) : value === '' ? 'it printed nothing' : 'it printed more than one line'
        reject(new SecretUnavailable(`command ${argv.join(' ')} gave no token: ${why || error?.message}`))
        return
      }
      resolve(value)
    })
  })
}
