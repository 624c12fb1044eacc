import {createHash} from 'node:crypto'
import {mkdir, open, readFile, rename, rm, stat, writeFile} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {jwtClaims} from './phantom.js'
import {jsonAt} from './secrets.js'
import type {LoginSpec, TokenKind} from './spec.js'
import type {TokenSet} from './state.js'

const LOCK_WAIT_MS = 30_000
/** A lock file older than this is a crashed holder's, whatever its pid says. */
const LOCK_STALE_MS = 60_000
/** An access token this close to its expiry is refreshed rather than handed out again. */
const EXPIRY_MARGIN_MS = 60_000

/** Where one login's tokens live, and the lock its single refresher holds. */
export interface TokenStore {
  read(): Promise<TokenSet | undefined>
  write(tokens: TokenSet): Promise<void>
  /** Runs `work` as the only refresher of this lineage. */
  locked<T>(work: () => Promise<T>): Promise<T>
}

/** What a token endpoint answered to a refresh the gateway sent. */
export interface TokenAnswer {
  status: number
  json: unknown
}

export type RefreshOutcome =
  /** Another holder refreshed since this sandbox got its token: the current tokens, no call upstream. */
  | {kind: 'served'; tokens: TokenSet}
  | {kind: 'refreshed'; tokens: TokenSet; answer: TokenAnswer}
  /** The endpoint refused the refresh token: the login must be made again. */
  | {kind: 'expired'; answer: TokenAnswer}
  /** No refresh token to use. */
  | {kind: 'no-login'}
  /** The endpoint failed or answered something that is not a token response; nothing is stored. */
  | {kind: 'failed'; answer: TokenAnswer}

/**
 * One refresh of a lineage, by its single refresher: under the lock, the
 * store is read again; if another holder (a sandbox, the host's CLI) has
 * refreshed since `delivered` was handed out, its tokens are served as they
 * are, so a single-use refresh token is never sent twice. Otherwise the
 * current refresh token goes upstream through `exchange`, and the answer's
 * tokens are stored before anyone else may look.
 */
export async function refreshLineage(store: TokenStore, delivered: string | undefined, exchange: (refreshToken: string) => Promise<TokenAnswer>): Promise<RefreshOutcome> {
  return store.locked(async () => {
    const current = await store.read()
    if (current?.access !== undefined && current.access !== delivered && !expiresSoon(current)) return {kind: 'served', tokens: current}
    if (current?.refresh === undefined) return {kind: 'no-login'}
    const answer = await exchange(current.refresh)
    const body = answer.json
    if (answer.status >= 200 && answer.status < 300 && isRecord(body) && typeof body.access_token === 'string' && body.access_token !== '') {
      const tokens = tokensFromAnswer(body, current)
      await store.write(tokens)
      return {kind: 'refreshed', tokens, answer}
    }
    if (answer.status >= 400 && answer.status < 500) return {kind: 'expired', answer}
    return {kind: 'failed', answer}
  })
}

/** The token set a token endpoint's JSON answer gives, keeping what it leaves out from `previous`. */
export function tokensFromAnswer(body: Record<string, unknown>, previous: TokenSet = {}): TokenSet {
  const text = (key: string) => (typeof body[key] === 'string' && body[key] !== '' ? (body[key] as string) : undefined)
  const access = text('access_token') ?? previous.access
  const expiresIn = typeof body.expires_in === 'number' ? body.expires_in : undefined
  const expires = expiresIn === undefined ? jwtExpiry(access) : Date.now() + expiresIn * 1000
  return {
    ...(access !== undefined && {access}),
    ...((text('refresh_token') ?? previous.refresh) !== undefined && {refresh: text('refresh_token') ?? previous.refresh}),
    ...((text('id_token') ?? previous.id) !== undefined && {id: text('id_token') ?? previous.id}),
    ...(expires !== undefined && {expires_at: expires}),
  }
}

export function expiresSoon(tokens: TokenSet): boolean {
  return tokens.expires_at !== undefined && tokens.expires_at - Date.now() < EXPIRY_MARGIN_MS
}

function jwtExpiry(token: string | undefined): number | undefined {
  const exp = token === undefined ? undefined : jwtClaims(token)?.exp
  return typeof exp === 'number' ? exp * 1000 : undefined
}

/** The tokens an auth file holds, by the login's paths. */
export function tokensInFile(login: LoginSpec, content: unknown): TokenSet {
  const tokens: TokenSet = {}
  for (const field of login.tokens) {
    const value = jsonAt(content, field.path)
    if (typeof value === 'string' && value !== '') tokens[field.kind] = value
  }
  const expires = login.expires ? jsonAt(content, login.expires.path) : undefined
  const expiresAt = typeof expires === 'number' ? (login.expires?.unit === 's' ? expires * 1000 : expires) : jwtExpiry(tokens.access)
  return expiresAt === undefined ? tokens : {...tokens, expires_at: expiresAt}
}

/** `content` with the login's token fields (and expiry, refresh time) set from `tokens`; every other field kept. */
export function withTokens(login: LoginSpec, content: unknown, tokens: Partial<Record<TokenKind, string>>, expiresAt: number | undefined): Record<string, unknown> {
  const root = isRecord(content) ? structuredClone(content) : {}
  for (const field of login.tokens) {
    const value = tokens[field.kind]
    if (value !== undefined) setAt(root, field.path, value)
  }
  if (login.expires && expiresAt !== undefined) setAt(root, login.expires.path, login.expires.unit === 's' ? Math.floor(expiresAt / 1000) : expiresAt)
  if (login.refreshed_at) setAt(root, login.refreshed_at, new Date().toISOString())
  return root
}

export function setAt(root: Record<string, unknown>, path: string, value: unknown): void {
  const keys = path.split('.')
  let node = root
  for (const key of keys.slice(0, -1)) {
    if (!isRecord(node[key])) node[key] = {}
    node = node[key] as Record<string, unknown>
  }
  node[keys.at(-1)!] = value
}

/**
 * A host login's tokens, in the host's own auth file (`write_back`), or, when
 * write-back is off, in a private store of the daemon seeded from it (and
 * seeded again when the host logs in anew). One lock per auth file, across
 * sandboxes and processes: see `withLoginLock`.
 */
export class HostLoginStore implements TokenStore {
  constructor(
    private readonly login: LoginSpec & {host_file: string},
    private readonly stateRoot: string,
    private readonly writeBack: boolean,
  ) {}

  async read(): Promise<TokenSet | undefined> {
    const host = await readJson(this.login.host_file)
    if (host === undefined) return undefined
    const tokens = tokensInFile(this.login, host)
    if (this.writeBack) return tokens
    const own = (await readJson(this.privatePath())) as {seed?: string; tokens?: TokenSet} | undefined
    return own?.tokens !== undefined && own.seed === seedOf(tokens) ? own.tokens : tokens
  }

  async write(tokens: TokenSet): Promise<void> {
    if (!this.writeBack) {
      const host = await readJson(this.login.host_file)
      await writeAtomic(this.privatePath(), JSON.stringify({seed: seedOf(host === undefined ? {} : tokensInFile(this.login, host)), tokens}), 0o600)
      return
    }
    const content = await readJson(this.login.host_file)
    const mode = await stat(this.login.host_file).then(
      (stats) => stats.mode & 0o777,
      () => 0o600,
    )
    await writeAtomic(this.login.host_file, `${JSON.stringify(withTokens(this.login, content, tokens, tokens.expires_at), null, 2)}\n`, mode)
  }

  locked<T>(work: () => Promise<T>): Promise<T> {
    return withLoginLock(this.stateRoot, this.login.host_file, work)
  }

  private privatePath(): string {
    return join(this.stateRoot, 'logins', `${digest(this.login.host_file)}.json`)
  }
}

const inProcess = new Map<string, Promise<unknown>>()

/**
 * Runs `work` as the only refresher of the login kept in `hostFile`: queued
 * behind this process's other refreshers of it, and holding a lock file in the
 * daemon's state (`logins/<digest>.lock`) against other processes that take
 * the same lock. The host's own agent CLI does not; the gateway reads the auth
 * file again under the lock, so a refresh the host made before is adopted.
 */
export function withLoginLock<T>(stateRoot: string, hostFile: string, work: () => Promise<T>): Promise<T> {
  const previous = inProcess.get(hostFile) ?? Promise.resolve()
  const run = previous.catch(() => undefined).then(() => withLockFile(join(stateRoot, 'logins', `${digest(hostFile)}.lock`), work))
  inProcess.set(hostFile, run)
  void run.finally(() => {
    if (inProcess.get(hostFile) === run) inProcess.delete(hostFile)
  }).catch(() => undefined)
  return run
}

async function withLockFile<T>(path: string, work: () => Promise<T>): Promise<T> {
  await mkdir(dirname(path), {recursive: true, mode: 0o700})
  const deadline = Date.now() + LOCK_WAIT_MS
  for (;;) {
    try {
      const handle = await open(path, 'wx', 0o600)
      await handle.writeFile(String(process.pid))
      await handle.close()
      break
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      if (await staleLock(path)) {
        await rm(path, {force: true})
        continue
      }
      if (Date.now() > deadline) throw new Error(`the login lock ${path} is held by another process for over ${LOCK_WAIT_MS / 1000} s`)
      await sleep(25)
    }
  }
  try {
    return await work()
  } finally {
    await rm(path, {force: true})
  }
}

async function staleLock(path: string): Promise<boolean> {
  const [text, stats] = await Promise.all([readFile(path, 'utf8').catch(() => ''), stat(path).catch(() => undefined)])
  if (stats === undefined) return false
  if (Date.now() - stats.mtimeMs > LOCK_STALE_MS) return true
  const pid = Number(text)
  if (!Number.isInteger(pid) || pid <= 0) return Date.now() - stats.mtimeMs > 1000
  try {
    process.kill(pid, 0)
    return false
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH'
  }
}

async function readJson(path: string): Promise<unknown> {
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  try {
    return JSON.parse(text) as unknown
  } catch {
    return undefined
  }
}

async function writeAtomic(path: string, text: string, mode: number): Promise<void> {
  await mkdir(dirname(path), {recursive: true, mode: 0o700})
  const temp = join(dirname(path), `.${basename(path)}.cleanroom-${process.pid}.tmp`)
  try {
    await writeFile(temp, text, {mode})
    await rename(temp, path)
  } catch (error) {
    await rm(temp, {force: true})
    throw error
  }
}

function digest(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, 24)
}

/** What identifies the host login a private store was seeded from, without keeping its token. */
function seedOf(tokens: TokenSet): string {
  return digest(tokens.refresh ?? tokens.access ?? '')
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}
