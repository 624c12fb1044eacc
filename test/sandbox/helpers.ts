import {createHash} from 'node:crypto'
import {mkdir, readdir, readFile} from 'node:fs/promises'
import {join, relative} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import type {BackendRuntime, SandboxBackend, SandboxProcess} from '../../src/sandbox/backend.js'
import {newSandboxId} from '../../src/sandbox/ids.js'

export interface Ran {
  exitCode: number
  signal: string | null
  stdout: Buffer
  stderr: Buffer
}

/** Runs argv in the sandbox with pipes, feeding `stdin`, and collects everything. */
export async function run(
  backend: SandboxBackend,
  runtime: BackendRuntime,
  argv: string[],
  options: {stdin?: Buffer | string; env?: Record<string, string>; cwd?: string} = {},
): Promise<Ran> {
  const started = await backend.exec(runtime, {argv, env: options.env ?? {}, tty: false, ...(options.cwd ? {cwd: options.cwd} : {})})
  const stdout = collect(started.stdout)
  const stderr = started.stderr ? collect(started.stderr) : Promise.resolve(Buffer.alloc(0))
  started.stdin.end(options.stdin ?? '')
  const status = await started.exited
  return {exitCode: status.exit_code, signal: status.signal, stdout: await stdout, stderr: await stderr}
}

/** Runs a shell script and returns its stdout as text, failing on a non-zero exit. */
export async function sh(backend: SandboxBackend, runtime: BackendRuntime, script: string): Promise<string> {
  const ran = await run(backend, runtime, ['sh', '-c', script])
  if (ran.exitCode !== 0) throw new Error(`sh -c '${script}' exited ${ran.exitCode}: ${ran.stderr.toString()}`)
  return ran.stdout.toString()
}

export async function collect(stream: AsyncIterable<Buffer | string>): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(Buffer.from(chunk))
  return Buffer.concat(chunks)
}

/** A terminal's output as text so far, for a test driving a TTY exec. */
export function terminalOutput(process: SandboxProcess): () => string {
  let text = ''
  process.stdout.on('data', (chunk: Buffer) => {
    text += chunk.toString('utf8')
  })
  return () => text
}

export async function waitFor(what: string, condition: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** A fresh state dir among the sandbox dirs of `sandboxesDir`, as the daemon's store makes it. */
export async function newStateDir(sandboxesDir: string): Promise<{sandboxId: string; stateDir: string}> {
  const sandboxId = newSandboxId()
  const stateDir = join(sandboxesDir, sandboxId)
  await mkdir(stateDir, {recursive: true, mode: 0o700})
  return {sandboxId, stateDir}
}

export const POLICY = DEFAULT_POLICY

export interface HostProcess {
  pid: number
  uid: number
  comm: string
  cmdline: string[]
}

export async function hostProcesses(): Promise<HostProcess[]> {
  const found: HostProcess[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    try {
      const [status, cmdline] = await Promise.all([readFile(`/proc/${entry}/status`, 'utf8'), readFile(`/proc/${entry}/cmdline`, 'utf8')])
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1])
      const comm = /^Name:\s+(.*)$/m.exec(status)?.[1] ?? ''
      found.push({pid: Number(entry), uid, comm, cmdline: cmdline.split('\0').filter(Boolean)})
    } catch {
      // exited while we looked
    }
  }
  return found
}

/** Lines of every process's mountinfo that mention `marker` (or one of them). */
export async function mountLinesMentioning(marker: string | readonly string[]): Promise<string[]> {
  const markers = typeof marker === 'string' ? [marker] : marker
  const lines = new Set<string>()
  if (markers.length === 0) return []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const mountinfo = await readFile(`/proc/${entry}/mountinfo`, 'utf8').catch(() => '')
    for (const line of mountinfo.split('\n')) if (markers.some((each) => line.includes(each))) lines.add(line)
  }
  return [...lines]
}

/** sha256 of every file under `dir`, by relative path. */
export async function treeDigest(dir: string): Promise<Record<string, string>> {
  const digests: Record<string, string> = {}
  const walk = async (current: string): Promise<void> => {
    for (const entry of await readdir(current, {withFileTypes: true})) {
      const path = join(current, entry.name)
      if (entry.isDirectory()) await walk(path)
      else if (entry.isFile()) digests[relative(dir, path)] = createHash('sha256').update(await readFile(path)).digest('hex')
    }
  }
  await walk(dir)
  return digests
}
