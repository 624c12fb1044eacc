import {execa} from 'execa'
import {fileURLToPath} from 'node:url'

export const PROJECT_ROOT = fileURLToPath(new URL('../..', import.meta.url))
/** The CLI's entry point, as a user runs it. */
export const RUN_SCRIPT = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

export interface CliResult {
  stdout: string
  stderr: string
  exitCode: number
}

/**
 * Runs the built CLI (`bin/run.js`, from `dist/`) as a user would, with an
 * environment of the caller's choosing: pass HOME, XDG_CONFIG_HOME and
 * CLEANROOM_DATA_DIR of a temp dir so the developer's own setup never leaks in.
 */
export async function runCli(args: readonly string[], options: {env?: Record<string, string>; cwd?: string; input?: string} = {}): Promise<CliResult> {
  const result = await execa(process.execPath, [RUN_SCRIPT, ...args], {
    cwd: options.cwd ?? PROJECT_ROOT,
    env: {NO_COLOR: '1', ...options.env},
    input: options.input,
    reject: false,
  })
  return {stdout: result.stdout, stderr: result.stderr, exitCode: result.exitCode ?? -1}
}

/** An environment that points every per-user location at `home`. */
export function isolatedEnv(home: string): Record<string, string> {
  return {
    HOME: home,
    XDG_CONFIG_HOME: `${home}/.config`,
    XDG_STATE_HOME: `${home}/.local/state`,
    XDG_RUNTIME_DIR: `${home}/run`,
    CLEANROOM_DATA_DIR: `${home}/.local/share/cleanroom`,
    CLEANROOM_CACHE_DIR: `${home}/.cache/cleanroom`,
  }
}
