import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {chmod, lstat, mkdir, readdir, stat, symlink, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

import {cacheLayout, indexKey} from '../../src/agents/cache/layout.js'
import {withLock} from '../../src/agents/cache/lock.js'
import {addEntry, writeIndex} from '../../src/agents/cache/store.js'
import {sealTree} from '../../src/agents/cache/tree.js'
import {agentCacheUsage, entriesInUse, pruneAgentCache} from '../../src/agents/cache/usage.js'
import type {SandboxRecord} from '../../src/sandbox/types.js'
import {tempDirs} from '../helpers/tmp.js'

/** A tree as npm leaves one: a package with a bin script and its .bin link. */
async function npmTree(root: string, version: string): Promise<void> {
  await mkdir(join(root, 'node_modules/agent/bin'), {recursive: true})
  await mkdir(join(root, 'node_modules/.bin'))
  await writeFile(join(root, 'node_modules/agent/package.json'), JSON.stringify({name: 'agent', version}))
  await writeFile(join(root, 'node_modules/agent/bin/agent.js'), '#!/usr/bin/env node\n', {mode: 0o755})
  await symlink('../agent/bin/agent.js', join(root, 'node_modules/.bin/agent'))
}

describe('the shared agent cache on disk', () => {
  const dirs = tempDirs('cleanroom-cache-lib-')
  afterEach(() => dirs.cleanup())

  describe('sealTree', () => {
    it('names a tree by its content, the same content by the same name, and leaves it read-only', async () => {
      const [a, b, c] = [await dirs.make(), await dirs.make(), await dirs.make()]
      await npmTree(a, '1.0.0')
      await npmTree(b, '1.0.0')
      await npmTree(c, '1.0.1')
      const [sa, sb, sc] = [await sealTree(a), await sealTree(b), await sealTree(c)]
      expect(sa.id).to.match(/^[0-9a-f]{64}$/).and.equal(sb.id)
      expect(sc.id).not.to.equal(sa.id)
      expect((await stat(a)).mode & 0o777).to.equal(0o555)
      expect((await stat(join(a, 'node_modules/agent'))).mode & 0o777).to.equal(0o555)
      expect((await stat(join(a, 'node_modules/agent/package.json'))).mode & 0o777).to.equal(0o444)
      expect((await stat(join(a, 'node_modules/agent/bin/agent.js'))).mode & 0o777).to.equal(0o555)
      expect((await lstat(join(a, 'node_modules/.bin/agent'))).isSymbolicLink()).to.equal(true)
      for (const dir of [a, b, c]) await chmod(dir, 0o755)
    })

    it('tells an executable bit apart from plain content', async () => {
      const [a, b] = [await dirs.make(), await dirs.make()]
      await npmTree(a, '1.0.0')
      await npmTree(b, '1.0.0')
      await chmod(join(b, 'node_modules/agent/package.json'), 0o755)
      expect((await sealTree(a)).id).not.to.equal((await sealTree(b)).id)
      for (const dir of [a, b]) await chmod(dir, 0o755)
    })
  })

  describe('usage and prune', () => {
    const DAY = 86_400_000

    /** A cache with entries of 1.0.0 (old, referenced), 1.1.0 (recent) and 0.9.0 (old, referenced by nothing). */
    async function cache(): Promise<{root: string; ids: Record<string, string>}> {
      const root = await dirs.make()
      const layout = cacheLayout(root)
      const ids: Record<string, string> = {}
      for (const version of ['1.0.0', '1.1.0', '0.9.0']) {
        const tree = join(await dirs.make(), 'tree')
        await npmTree(tree, version)
        const {id, bytes} = await sealTree(tree)
        await addEntry(layout, tree, id, {package: 'agent', version, fetched_at: new Date(Date.now() - 30 * DAY).toISOString(), bytes})
        ids[version] = id
      }
      const old = new Date(Date.now() - 10 * DAY)
      for (const [wanted, version, used] of [['1.0.0', '1.0.0', old], ['latest', '1.1.0', new Date()]] as const) {
        const key = indexKey({package: 'agent', wanted, npmConfig: {}})
        await writeIndex(layout, key, {package: 'agent', wanted, version, entry: ids[version]!, checked_at: used.toISOString()})
        await utimes(join(layout.index, `${key}.json`), used, used)
      }
      return {root, ids}
    }

    it('lists every entry with what it holds, its size, its last use and the names that lead to it', async () => {
      const {root, ids} = await cache()
      const usage = await agentCacheUsage(root)
      expect(usage).to.deep.include({kind: 'agents', path: root})
      expect(usage.bytes).to.be.greaterThan(0)
      const byVersion = Object.fromEntries(usage.entries.map((entry) => [entry.version, entry]))
      expect(byVersion['1.1.0']).to.deep.include({entry: ids['1.1.0'], package: 'agent', wanted: ['agent@latest']})
      expect(byVersion['0.9.0']!.wanted).to.deep.equal([])
      expect(byVersion['1.0.0']!.bytes).to.be.greaterThan(0)
      expect(Date.now() - Date.parse(byVersion['1.1.0']!.last_used_at)).to.be.below(DAY)
    })

    it('removes what was not used since the cut-off, never an entry a sandbox has mounted, with the names that led to it', async () => {
      const {root, ids} = await cache()
      const layout = cacheLayout(root)
      const inUse = entriesInUse([
        {status: 'ready', agent_package: {entry: ids['0.9.0']!, package: 'agent', version: '0.9.0'}},
        {status: 'stopped', agent_package: {entry: ids['1.0.0']!, package: 'agent', version: '1.0.0'}},
      ] as SandboxRecord[])
      const dry = await pruneAgentCache(root, {inUse, olderThanMs: 7 * DAY, dryRun: true})
      expect(dry.removed.map((entry) => entry.version)).to.deep.equal(['1.0.0'])
      expect((await readdir(layout.entries)).length, 'a dry run removes nothing').to.equal(6)

      const report = await pruneAgentCache(root, {inUse, olderThanMs: 7 * DAY, dryRun: false})
      expect(report.removed.map((entry) => entry.version)).to.deep.equal(['1.0.0'])
      expect(Object.fromEntries(report.kept.map((entry) => [entry.version, entry.reason]))).to.deep.equal({'0.9.0': 'a sandbox has it mounted', '1.1.0': 'used recently'})
      expect(report.reclaimed_bytes).to.equal(dry.reclaimed_bytes).and.be.greaterThan(0)
      expect((await readdir(layout.entries)).sort()).to.deep.equal([ids['0.9.0']!, `${ids['0.9.0']}.json`, ids['1.1.0']!, `${ids['1.1.0']}.json`].sort())
      expect(await readdir(layout.index)).to.deep.equal([`${indexKey({package: 'agent', wanted: 'latest', npmConfig: {}})}.json`])
    })
  })

  describe('withLock', () => {
    it('lets one holder in at a time', async () => {
      const path = join(await dirs.make(), 'x.lock')
      const order: string[] = []
      const hold = (name: string) =>
        withLock(path, async () => {
          order.push(`${name} in`)
          await sleep(100)
          order.push(`${name} out`)
        }, {timeoutMs: 5000, what: 'x'})
      await Promise.all([hold('a'), hold('b')])
      const first = order[0]!.split(' ')[0]
      const second = first === 'a' ? 'b' : 'a'
      expect(order, 'the second holder enters only after the first left').to.deep.equal([`${first} in`, `${first} out`, `${second} in`, `${second} out`])
    })

    it('takes over a lock whose process is gone', async () => {
      const path = join(await dirs.make(), 'x.lock')
      const child = spawn(process.execPath, ['-e', '0'])
      const pid = child.pid!
      await new Promise((resolve) => child.once('exit', resolve))
      await writeFile(path, `${pid}\n`)
      expect(await withLock(path, async () => 'mine', {timeoutMs: 5000, what: 'x'})).to.equal('mine')
    })

    it('gives up on a living holder after the timeout, naming it', async () => {
      const path = join(await dirs.make(), 'x.lock')
      await writeFile(path, `${process.pid}\n`)
      const error = await withLock(path, async () => 'never', {timeoutMs: 300, what: 'agent@latest'}).catch((caught: Error & {code?: string}) => caught)
      expect((error as {code?: string}).code).to.equal('agent_cache_busy')
      expect((error as Error).message).to.contain(`agent@latest is being fetched by another cleanroom daemon (pid ${process.pid})`)
    })
  })
})
