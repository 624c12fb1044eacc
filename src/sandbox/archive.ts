import {posix} from 'node:path'
import {PassThrough, type Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'

import {CleanroomError, messageOf} from '../errors/index.js'
import type {SandboxProcess} from './backend.js'
import type {ExecRequest, ExitStatus} from './types.js'

/** Starts a process in one sandbox (the backend's exec, bound to its runtime). */
export type RunInSandbox = (request: ExecRequest) => Promise<SandboxProcess>

/**
 * The sandbox's own tools do the copying: `mkdir`, `stat` and `tar` from its root filesystem
 * (GNU's or busybox's), never anything of the host's. An image without them cannot take or give files.
 */
const TOOLS = 'mkdir, stat and tar'

/** Unpacks `archive` at `destination` inside the sandbox with the sandbox's tar, as the sandbox user. */
export async function extractArchive(run: RunInSandbox, archive: Readable, destination: string): Promise<void> {
  const mkdir = await runToEnd(run, ['mkdir', '-p', '--', destination])
  if (mkdir.status.exit_code !== 0) {
    archive.destroy()
    requireTool(mkdir.status, 'mkdir')
    throw new CleanroomError('bad_request', `${destination}: cannot be created in the sandbox: ${mkdir.stderr.trim()}`)
  }
  const tar = await run(command(['tar', '-x', '-f', '-', '-C', destination, '--no-same-owner']))
  const stderr = text(tar.stderr)
  tar.stdout.resume()
  const [feedError, status] = await Promise.all([pipeline(archive, tar.stdin).then(() => undefined, (error: unknown) => error), tar.exited])
  requireTool(status, 'tar')
  if (status.exit_code !== 0) {
    throw new CleanroomError('bad_request', `could not unpack the archive into ${destination}: ${(await stderr).trim() || `tar exited with ${status.exit_code}`}`)
  }
  // tar may stop reading after the archive's end blocks: a broken pipe then is no error.
  if (feedError !== undefined && (feedError as NodeJS.ErrnoException).code !== 'EPIPE') {
    throw new CleanroomError('bad_request', `the archive for ${destination} could not be read: ${messageOf(feedError)}`, {cause: feedError})
  }
}

/** A tar stream of `path` inside the sandbox (a file or a directory), its top entry named after `path`'s last part. */
export async function readArchive(run: RunInSandbox, path: string): Promise<Readable> {
  const found = await runToEnd(run, ['stat', '-c', '%F', '--', path])
  requireTool(found.status, 'stat')
  if (found.status.exit_code !== 0) {
    const missing = /No such file or directory|Not a directory/.test(found.stderr)
    throw new CleanroomError('bad_request', missing ? `${path}: no such file or directory in the sandbox` : `${path}: ${found.stderr.trim()}`)
  }
  const tar = await run(command(['tar', '-c', '-f', '-', '-C', posix.dirname(path), '--', posix.basename(path) || '.']))
  tar.stdin.end()
  const stderr = text(tar.stderr)
  const output = new PassThrough()
  // End the stream only once tar's status is known: a failed tar must not look like a short archive.
  tar.stdout.pipe(output, {end: false})
  const drained = new Promise((resolve) => tar.stdout.once('end', resolve))
  Promise.all([tar.exited, drained]).then(
    async ([status]) => {
      if (status.exit_code === 127) output.destroy(toolMissing('tar'))
      else if (status.exit_code === 0) output.end()
      else output.destroy(new CleanroomError('bad_request', `could not archive ${path}: ${(await stderr).trim() || `tar exited with ${status.exit_code}`}`))
    },
    (error: unknown) => output.destroy(error as Error),
  )
  output.once('close', () => tar.signal('SIGKILL'))
  return output
}

/** Exit 127 is the exec's "command not found": the sandbox's root filesystem lacks the tool. */
function requireTool(status: ExitStatus, tool: string): void {
  if (status.exit_code === 127) throw toolMissing(tool)
}

function toolMissing(tool: string): CleanroomError {
  return new CleanroomError('sandbox_tool_missing', `the sandbox has no ${tool}: copying files in or out runs the sandbox's own ${TOOLS}`, {
    suggestions: [
      'Use an image that has them (busybox, or coreutils and tar)',
      'What the sandbox writes under /workspace comes out without them: cleanroom workspace diff|apply reads it from the host',
    ],
  })
}

async function runToEnd(run: RunInSandbox, argv: string[]): Promise<{status: ExitStatus; stderr: string}> {
  const started = await run(command(argv))
  started.stdin.end()
  started.stdout.resume()
  const [status, stderr] = await Promise.all([started.exited, text(started.stderr)])
  return {status, stderr}
}

function command(argv: string[]): ExecRequest {
  return {argv, env: {}, tty: false}
}

async function text(stream: Readable | null): Promise<string> {
  if (!stream) return ''
  const chunks: Buffer[] = []
  for await (const chunk of stream) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks).toString('utf8')
}
