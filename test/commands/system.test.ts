import {expect} from 'chai'
import {readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {DiskUsageReport, PruneReport} from '../../src/daemon/system/index.js'
import type {PublicSandbox} from '../../src/client/client.js'
import {stateDir as stateDirOf} from '../../src/paths.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'
import {eventually} from '../helpers/daemon-process.js'

describe('cleanroom system df and prune', function () {
  this.timeout(180_000)
  const suite = cliRepoSuite('cleanroom-system-')

  async function cli(args: string[]): Promise<string> {
    const result = await suite.cli(args)
    expect(result.exitCode, `cleanroom ${args.join(' ')}: ${result.stderr}`).to.equal(0)
    return result.stdout
  }

  const json = async <T>(args: string[]): Promise<T> => JSON.parse(await cli([...args, '--json'])) as T
  const removedLines = (report: PruneReport) =>
    report.removed.map((item) => (item.type === 'sandbox' ? `sandbox ${item.sandbox_id}` : item.type === 'cache' ? `cache ${item.kind} ${item.sandbox_id}` : `log ${item.path}`)).sort()

  it('shows what sandboxes, their caches and the logs take, and prunes failed and idle ones, never one in use', async () => {
    const stateDir = stateDirOf(suite.env)
    const [failed, idle, busy] = [(await cli(['sandbox', 'create'])).trim(), (await cli(['sandbox', 'create'])).trim(), (await cli(['sandbox', 'create'])).trim()]
    await cli(['exec', '--sandbox-id', idle, '--', 'sh', '-c', 'mkdir -p ~/.npm/_cacache ~/.cache/tool && head -c 1048576 /dev/urandom > ~/.npm/_cacache/blob && head -c 65536 /dev/urandom > ~/.cache/tool/blob'])
    await cli(['exec', '--sandbox-id', busy, '--', 'sh', '-c', 'sleep 300 </dev/null >/dev/null 2>&1 &'])
    const record = JSON.parse(await readFile(join(stateDir, 'sandboxes', failed, 'state.json'), 'utf8')) as {runtime: {init_pid: number}}
    process.kill(record.runtime.init_pid, 'SIGKILL')
    await eventually('the killed sandbox to be failed', async () => (await json<PublicSandbox>(['sandbox', 'inspect', failed])).status === 'failed')
    await writeFile(join(stateDir, 'daemon.log.1'), 'an earlier log\n')

    const usage = await json<DiskUsageReport>(['system', 'df'])
    expect(usage.sandboxes.map((sandbox) => `${sandbox.sandbox_id} ${sandbox.status} ${sandbox.in_use ? 'in use' : 'idle'}`)).to.deep.equal(
      [`${failed} failed idle`, `${idle} ready idle`, `${busy} ready in use`].sort(),
    )
    const npm = usage.caches.find((cache) => cache.kind === 'npm' && cache.sandbox_id === idle)
    expect(npm?.path).to.equal('~/.npm')
    expect(npm?.bytes).to.be.within(1 << 20, 2 << 20)
    expect(usage.caches.find((cache) => cache.kind === 'user-cache' && cache.sandbox_id === idle)?.bytes).to.be.at.least(65_536)
    expect(usage.logs.map((log) => `${log.path} ${log.live}`)).to.deep.equal([`${join(stateDir, 'daemon.log')} true`, `${join(stateDir, 'daemon.log.1')} false`])
    // All of it was used within the default 7 days.
    expect(usage.totals.map((total) => `${total.type} ${total.count} ${total.reclaimable_bytes}`)).to.deep.equal(['sandboxes 3 0', 'caches 2 0', 'logs 2 0'])
    expect(await cli(['system', 'df'])).to.match(/^TYPE +COUNT +SIZE +RECLAIMABLE\nsandboxes +3 /)

    const dryRun = await json<PruneReport>(['system', 'prune', '--dry-run', '--older-than', '0'])
    expect(dryRun.dry_run).to.equal(true)
    expect(removedLines(dryRun)).to.deep.equal([`cache npm ${idle}`, `cache user-cache ${idle}`, `log ${join(stateDir, 'daemon.log.1')}`, `sandbox ${failed}`].sort())
    expect((await json<DiskUsageReport>(['system', 'df'])).sandboxes).to.have.length(3)

    const pruned = await json<PruneReport>(['system', 'prune', '--older-than', '0'])
    expect(removedLines(pruned)).to.deep.equal(removedLines(dryRun))
    expect(pruned.reclaimed_bytes).to.be.above(1 << 20)
    expect(pruned.kept.find((item) => item.type === 'sandbox' && item.sandbox_id === busy)?.reason).to.equal('it is in use')
    expect((await json<PublicSandbox[]>(['sandbox', 'ls'])).map((sandbox) => sandbox.sandbox_id)).to.deep.equal([idle, busy].sort())
    expect(await cli(['exec', '--sandbox-id', idle, '--', 'sh', '-c', 'ls -A ~'])).to.equal('')

    expect((await json<PruneReport>(['system', 'prune'])).removed).to.deep.equal([])
    const all = await json<PruneReport>(['system', 'prune', '--all', '--older-than', '0'])
    // The failed one, removed before, was still listed as stopped: now it is forgotten too.
    expect(removedLines(all)).to.deep.equal([`sandbox ${failed}`, `sandbox ${idle}`].sort())
    expect((await json<PublicSandbox[]>(['sandbox', 'ls'])).map((sandbox) => sandbox.sandbox_id)).to.deep.equal([busy])
    const text = await cli(['system', 'prune', '--dry-run', '--all', '--older-than', '0'])
    expect(text).to.match(new RegExp(`^kept sandbox ${busy} \\(ready, [\\d.]+ [KMG]?i?B\\): it is in use$`, 'm'))
    expect(text.split('\n').at(-1)).to.equal('Total reclaimable: 0 B')
  })

  it('refuses an --older-than that is not a duration', async () => {
    const result = await suite.cli(['system', 'prune', '--older-than', 'soon'])
    expect(result.exitCode).to.equal(2)
    expect(result.stderr).to.include('Error: --older-than "soon" is not a duration')
  })
})
