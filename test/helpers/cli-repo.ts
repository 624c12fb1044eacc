import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir} from 'node:fs/promises'
import {join} from 'node:path'

import {socketPathOf} from '../../src/client/connect.js'
import {type CliResult, isolatedEnv, runCli} from './cli.js'
import {sandboxPids, leftoverSandboxes, stopCliDaemon} from './daemon.js'
import {tempDirs} from './tmp.js'

export interface CliRepo {
  /** The private HOME of the suite (XDG dirs, the daemon's socket and state under it). */
  home: string
  /** A git repository under it, the working directory of `cli`. */
  repo: string
  env: Record<string, string>
  cli(args: string[], options?: {cwd?: string; input?: string}): Promise<CliResult>
}

/**
 * For a suite that drives the real CLI: a private home with a git repository,
 * prepared once in `before`; in `after`, the daemon the CLI started is stopped,
 * no sandbox may be left running, and every temp dir is removed.
 */
export function cliRepoSuite(prefix: string, prepare: (context: CliRepo) => Promise<void> = async () => undefined): CliRepo {
  const dirs = tempDirs(prefix)
  let sandboxesBefore = new Set<number>()
  const context: CliRepo = {
    home: '',
    repo: '',
    env: {},
    cli: (args, options = {}) => runCli(args, {env: context.env, cwd: options.cwd ?? context.repo, input: options.input}),
  }

  before(async () => {
    sandboxesBefore = await sandboxPids()
    context.home = await dirs.make()
    context.env = isolatedEnv(context.home)
    context.repo = join(context.home, 'repo')
    await mkdir(context.repo)
    await execa('git', ['init', '-q', context.repo])
    await prepare(context)
  })

  after(async () => {
    await stopCliDaemon(socketPathOf(undefined, context.env))
    expect(await leftoverSandboxes(sandboxesBefore, context.home), 'sandboxes of this suite still running').to.deep.equal([])
    await dirs.cleanup()
  })

  return context
}
