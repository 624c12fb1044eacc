/**
 * `node --import tsx bench/workspace-diff.ts [MiB]`: how much memory the daemon
 * needs to bring a large change back. A sandbox writes one file of random data
 * (1024 MiB unless given), then the patch (GET …/workspace/diff) and the apply
 * archive (GET …/workspace/archive) are read to the end, and `cleanroom
 * workspace apply` writes the file into the repository. The daemon's peak RSS
 * above what it used before is the figure; the goal is under 64 MiB. See
 * bench/README.md.
 */
import {execFileSync, spawn} from 'node:child_process'
import {mkdir, mkdtemp, readFile, rm, stat, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {Writable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {benchEnv} from './harness.js'

const ROOT = fileURLToPath(new URL('..', import.meta.url))
const RUN = join(ROOT, 'bin/run.js')
const GOAL_MIB = 64
const MIB = 1 << 20

/** A process's resident and peak resident memory, in MiB. */
async function memoryOf(pid: number): Promise<{rss: number; peak: number}> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8')
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? 0) / 1024
  return {rss: field('VmRSS'), peak: field('VmHWM')}
}

/** Clears a process's peak RSS (VmHWM) so the next reading is the peak from now on (needs root or the same user). */
async function resetPeak(pid: number): Promise<void> {
  await writeFile(`/proc/${pid}/clear_refs`, '5')
}

/** Runs `step` while sampling `pid`'s RSS every 10 ms; the kernel's peak counter catches what sampling misses. */
async function peakDuring(pid: number, step: () => Promise<void>): Promise<{seconds: number; peak: number}> {
  await resetPeak(pid)
  let sampled = 0
  let running = true
  const sampler = (async () => {
    while (running) {
      sampled = Math.max(sampled, (await memoryOf(pid)).rss)
      await sleep(10)
    }
  })()
  const start = performance.now()
  try {
    await step()
  } finally {
    running = false
    await sampler
  }
  return {seconds: (performance.now() - start) / 1000, peak: Math.max(sampled, (await memoryOf(pid)).peak)}
}

function counter(): {sink: Writable; bytes: () => number} {
  let bytes = 0
  return {
    sink: new Writable({
      write(chunk: Buffer, _encoding, done) {
        bytes += chunk.length
        done()
      },
    }),
    bytes: () => bytes,
  }
}

async function main(): Promise<void> {
  const sizeMiB = Number(process.argv[2] ?? 1024)
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-diff-'))
  const env = benchEnv(home)
  const repo = join(home, 'repo')
  await mkdir(repo, {recursive: true})
  execFileSync('git', ['init', '-q', repo])
  await writeFile(join(repo, 'README'), 'bench\n')
  execFileSync('git', ['-c', 'user.name=b', '-c', 'user.email=b@b', 'commit', '-qm', 'init', '--allow-empty'], {cwd: repo})
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: 'ignore'})
  const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
  try {
    for (let i = 0; i < 400 && !(await client.ping().then(() => true, () => false)); i++) await sleep(25)
    const sandbox = await client.createSandbox({repository: repo})
    const wrote = await client.run(sandbox.sandbox_id, {argv: ['sh', '-c', `head -c ${sizeMiB * MIB} /dev/urandom > /workspace/big.bin`], env: {}})
    if (wrote.exit_code !== 0) throw new Error(`the sandbox could not write the file: ${wrote.stderr}`)
    const idle = await memoryOf(daemon.pid!)

    const patch = counter()
    const diff = await peakDuring(daemon.pid!, async () => pipeline(await client.workspacePatch(sandbox.sandbox_id), patch.sink))
    const archive = counter()
    const tar = await peakDuring(daemon.pid!, async () => pipeline(await client.workspaceArchive(sandbox.sandbox_id), archive.sink))
    let cliPeak = 0
    const apply = await peakDuring(daemon.pid!, async () => {
      const cli = spawn(process.execPath, [RUN, 'workspace', 'apply', sandbox.sandbox_id], {cwd: repo, env, stdio: ['ignore', 'ignore', 'inherit']})
      const sampling = setInterval(() => {
        void memoryOf(cli.pid!).then((memory) => (cliPeak = Math.max(cliPeak, memory.peak)), () => undefined)
      }, 20)
      const code = await new Promise<number | null>((resolve) => cli.on('exit', resolve))
      clearInterval(sampling)
      if (code !== 0) throw new Error(`workspace apply exited ${code}`)
    })
    const written = (await stat(join(repo, 'big.bin'))).size

    const growth = Math.max(diff.peak, tar.peak, apply.peak) - idle.rss
    const row = (label: string, run: {seconds: number; peak: number}, bytes?: number) =>
      `  ${label.padEnd(34)} ${run.seconds.toFixed(1).padStart(6)} s   daemon peak RSS ${run.peak.toFixed(0).padStart(5)} MiB (+${(run.peak - idle.rss).toFixed(0)})${bytes === undefined ? '' : `   ${(bytes / MIB).toFixed(0)} MiB sent`}`
    console.log(`workspace diff/apply of one ${sizeMiB} MiB file of random data (daemon idle RSS ${idle.rss.toFixed(0)} MiB)`)
    console.log(row('GET …/workspace/diff (the patch)', diff, patch.bytes()))
    console.log(row('GET …/workspace/archive', tar, archive.bytes()))
    console.log(row('cleanroom workspace apply', apply))
    console.log(`  the CLI's peak RSS while applying: ${cliPeak.toFixed(0)} MiB; ${(written / MIB).toFixed(0)} MiB written to the repository`)
    console.log(`  goal: daemon RSS growth < ${GOAL_MIB} MiB: ${growth.toFixed(0)} MiB ${growth < GOAL_MIB ? 'MET' : 'MISSED'}`)
    await client.removeSandbox(sandbox.sandbox_id)
  } finally {
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await rm(home, {recursive: true, force: true})
  }
}

await main()
