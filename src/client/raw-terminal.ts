import {spawnSync} from 'node:child_process'

/**
 * Puts the user's terminal in raw mode for a terminal inside a sandbox, and
 * returns what undoes it. Node's raw mode keeps output processing on, so the
 * `\r\n` the sandbox's own terminal already sends would reach the screen as
 * `\r\r\n` (and a program that moves the cursor with a bare `\n` would be
 * broken): output processing is turned off too (`stty -opost`), as ssh and
 * docker do, and the terminal's settings put back as they were.
 */
export function enterRawMode(stdin: NodeJS.ReadStream, stdout: NodeJS.WriteStream): () => void {
  stdin.setRawMode(true)
  const saved = stdout.isTTY ? stty(stdout, ['-g']) : undefined
  if (saved !== undefined) stty(stdout, ['-opost'])
  let restored = false
  return () => {
    if (restored) return
    restored = true
    if (saved !== undefined) stty(stdout, [saved])
    stdin.setRawMode(false)
  }
}

/** `stty` on the terminal `stdout` writes to; its output, or undefined when it failed. */
function stty(stdout: NodeJS.WriteStream, args: string[]): string | undefined {
  const result = spawnSync('stty', args, {stdio: [stdout, 'pipe', 'ignore'], encoding: 'utf8', timeout: 2000})
  return result.status === 0 ? result.stdout.trim() : undefined
}
