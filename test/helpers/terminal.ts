import {PassThrough, Readable} from 'node:stream'

import type {Terminal} from '../../src/client/exec.js'

/** A fake terminal for runInSandbox: fixed stdin bytes, captured stdout and stderr. */
export function captureTerminal(input: Buffer = Buffer.alloc(0)): Terminal & {output(): Buffer; errors(): Buffer} {
  const out: Buffer[] = []
  const err: Buffer[] = []
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  stdout.on('data', (chunk: Buffer) => out.push(chunk))
  stderr.on('data', (chunk: Buffer) => err.push(chunk))
  const stdin = Readable.from(input.length > 0 ? [input] : [])
  return {
    stdin: stdin as unknown as NodeJS.ReadStream,
    stdout: stdout as unknown as NodeJS.WriteStream,
    stderr: stderr as unknown as NodeJS.WriteStream,
    output: () => Buffer.concat(out),
    errors: () => Buffer.concat(err),
  }
}
