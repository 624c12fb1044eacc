import type {BackendRuntime, SandboxBackend} from '../../sandbox/backend.js'

/** Where a kind of cache lives. */
export type CacheLocation =
  /**
   * A directory in the sandbox user's home, in every ready sandbox. Its contents are
   * the sandbox's (hostile): it is measured and emptied from inside, as that user.
   */
  | {scope: 'sandbox'; home: string}
  /** A directory on the host that the daemon fills itself. */
  | {scope: 'host'; dir: string}
  /** Entries on the host that their own store lists and removes (the shared agent cache). */
  | {scope: 'entries'; store: CacheEntryStore}

/** A host cache of separate entries, some of which sandboxes may have mounted. */
export interface CacheEntryStore {
  list(): Promise<CacheEntry[]>
  /** Removes the entry at `path`; answers why not when it came into use since it was listed. */
  remove(path: string): Promise<string | undefined>
}

export interface CacheEntry {
  path: string
  bytes: number
  last_used_at: string
  /** What it holds, in words (a package and its version). */
  holds: string
  /** A live sandbox has it mounted: never removed. */
  in_use: boolean
}

export interface CacheKind {
  /** The stable name in `system df` and `system prune`. */
  kind: string
  description: string
  location: CacheLocation
}

/** Every cache `system df` measures and `system prune` empties: a new kind of cache is one more entry. */
export const CACHE_KINDS: readonly CacheKind[] = [
  {kind: 'npm', description: "npm's cache and npx installs (~/.npm; agents run with npm exec)", location: {scope: 'sandbox', home: '.npm'}},
  {kind: 'user-cache', description: "tools' caches (~/.cache)", location: {scope: 'sandbox', home: '.cache'}},
]

const INSIDE_TIMEOUT_MS = 30_000
const MAX_OUTPUT = 64 * 1024

/** Bytes of each in-sandbox cache dir that exists, by its path under the home (du, run in the sandbox). */
export async function measureInside(backend: SandboxBackend, runtime: BackendRuntime, homes: readonly string[]): Promise<Map<string, number>> {
  const sizes = new Map<string, number>()
  if (homes.length === 0) return sizes
  const {stdout} = await runInside(backend, runtime, ['sh', '-c', 'cd || exit 0; du -sk -- "$@" 2>/dev/null; exit 0', 'sh', ...homes])
  for (const line of stdout.split('\n')) {
    // The sandbox writes this output: only lines naming a dir that was asked about count.
    const match = /^(\d{1,15})\t(.+)$/.exec(line)
    if (match && homes.includes(match[2]!) && !sizes.has(match[2]!)) sizes.set(match[2]!, Number(match[1]) * 1024)
  }
  return sizes
}

/** Empties an in-sandbox cache dir, from inside, as the sandbox user. */
export async function emptyInside(backend: SandboxBackend, runtime: BackendRuntime, home: string): Promise<void> {
  const {exitCode, stderr} = await runInside(backend, runtime, ['sh', '-c', 'cd && rm -rf -- "$1"', 'sh', home])
  if (exitCode !== 0) throw new Error(`rm -rf ~/${home} in the sandbox exited ${exitCode}: ${stderr.trim().slice(0, 200)}`)
}

async function runInside(backend: SandboxBackend, runtime: BackendRuntime, argv: string[]): Promise<{exitCode: number; stdout: string; stderr: string}> {
  const process = await backend.exec(runtime, {argv, env: {}, tty: false})
  process.stdin.end()
  const timer = setTimeout(() => process.signal('SIGKILL'), INSIDE_TIMEOUT_MS)
  try {
    const [stdout, stderr, status] = await Promise.all([collect(process.stdout), process.stderr ? collect(process.stderr) : Promise.resolve(''), process.exited])
    return {exitCode: status.exit_code, stdout, stderr}
  } finally {
    clearTimeout(timer)
  }
}

function collect(stream: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve) => {
    let text = ''
    stream.on('data', (chunk: Buffer) => {
      if (text.length < MAX_OUTPUT) text += chunk.toString('utf8')
    })
    stream.on('end', () => resolve(text))
    stream.on('close', () => resolve(text))
    stream.on('error', () => resolve(text))
  })
}
