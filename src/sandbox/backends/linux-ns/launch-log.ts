import type {FileHandle} from 'node:fs/promises'
import type {Readable} from 'node:stream'
import {setTimeout as sleep} from 'node:timers/promises'

/** The most of a launch's stderr the log keeps: nsinit and bwrap say little, a flood is cut. */
const MAX_LAUNCH_LOG_BYTES = 64 * 1024

/**
 * Copies a launch's stderr (a pipe) into the sandbox log (`file`, opened for appending), up to
 * MAX_LAUNCH_LOG_BYTES, until closed. Closing destroys the pipe's read end: a
 * process still holding the write end (bwrap's init, the held command) then
 * writes to a pipe nobody reads, never to a file of the host.
 */
export class LaunchLog {
  private written = 0
  private pending: Promise<unknown> = Promise.resolve()
  private readonly ended: Promise<void>

  constructor(
    private readonly file: FileHandle,
    private readonly stderr: Readable,
  ) {
    this.ended = new Promise((resolve) => stderr.once('close', () => resolve()))
    stderr.on('data', this.onData)
    stderr.on('error', () => undefined)
  }

  /** Stops copying, after waiting up to `drainMs` for the writers to finish (a launch that failed has more to say). */
  async close(drainMs = 0): Promise<void> {
    if (drainMs > 0) await Promise.race([this.ended, sleep(drainMs)])
    this.stderr.off('data', this.onData)
    this.stderr.destroy()
    await this.pending
    await this.file.close()
  }

  private readonly onData = (chunk: Buffer): void => {
    const room = MAX_LAUNCH_LOG_BYTES - this.written
    if (room <= 0) return
    const kept = chunk.length > room ? Buffer.concat([chunk.subarray(0, room), Buffer.from('\n[launch output cut at 64 KiB]\n')]) : chunk
    this.written += chunk.length
    this.pending = this.pending.then(() => this.file.appendFile(kept)).catch(() => undefined)
  }
}
