import {type ChildProcess, execFile, spawn, type StdioOptions} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {open, unlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {GvisorRuntime} from './runtime.js'

/** The environment runsc runs with: nothing of the daemon's, so none of it can reach a sandbox. */
const RUNSC_ENV = {PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'}
const COMMAND_TIMEOUT_MS = 15_000

/**
 * Every sandbox is the one container of its own runsc root (its state: the control
 * socket, the container's record), under the sandbox's run dir; the container always
 * has this id. Unix socket paths are capped at 107 bytes, so the root is kept short.
 */
export const CONTAINER_ID = 'sandbox'

export function runscRoot(runDir: string): string {
  return join(runDir, 'runsc')
}

/** The global flags a sandbox's runsc commands share: where its state is. */
export function rootFlags(runtime: Pick<GvisorRuntime, 'run_dir'>): string[] {
  return ['--root', runscRoot(runtime.run_dir)]
}

/**
 * Starts `program <args>`: runsc, or nsinit create that becomes it. The one place runsc
 * is spawned from, with the hardened environment, in a session of its own.
 */
export function spawnRunsc(program: string, args: string[], stdio: StdioOptions): ChildProcess {
  return spawn(program, args, {stdio, env: RUNSC_ENV, detached: true})
}

/** Runs a short runsc command (state, kill, delete) to its end; never rejects. */
export function runscCommand(runsc: string, args: string[]): Promise<{ok: boolean; stdout: string; stderr: string}> {
  return new Promise((resolve) => {
    execFile(runsc, args, {env: RUNSC_ENV, timeout: COMMAND_TIMEOUT_MS}, (error, stdout, stderr) => resolve({ok: !error, stdout, stderr}))
  })
}

/**
 * The process spec in a file of the state dir (root only), opened and unlinked at
 * once: runsc reads it through the fd, and the environment it holds (tokens, keys)
 * never shows in a process list or stays on disk.
 */
export async function processFile(state: string, spec: Record<string, unknown>): Promise<{fd: number; close(): Promise<void>}> {
  const path = join(state, `exec-${randomBytes(8).toString('hex')}.json`)
  await writeFile(path, JSON.stringify(spec), {mode: 0o600, flag: 'wx'})
  const handle = await open(path, 'r')
  await unlink(path)
  return {fd: handle.fd, close: () => handle.close()}
}
