/**
 * The egress proxy's cost on loopback: the latency a new connection pays
 * through a CONNECT tunnel, and the throughput of a 256 MiB download through
 * it, each against the same request made directly, alternated. The target and
 * the client run in another process (bench/egress-peer.ts), the proxy in this
 * one, as the daemon and a sandbox would.
 */
import {type ChildProcess, fork} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {createServer, type AddressInfo} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {AuditLog} from '../src/egress/audit.js'
import {EgressProxy} from '../src/egress/proxy.js'
import {recompilePolicy} from '../src/policy/compile.js'
import {DOWNLOAD_BYTES, type PeerRequest} from './egress-shared.js'
import {compare, type Comparison} from './harness.js'

/** CPU the proxy's process spent relaying one 256 MiB download, against the download's wall time (medians of 3). */
export interface RelayCpu {
  wall_ms: number
  user_ms: number
  system_ms: number
}

export async function egressComparisons(runs: number): Promise<{latency: Comparison; throughput: Comparison; relayCpu: RelayCpu}> {
  const dir = await mkdtemp(join(tmpdir(), 'cleanroom-bench-egress-'))
  const peer = fork(fileURLToPath(new URL('egress-peer.ts', import.meta.url)), {execArgv: ['--import', 'tsx'], stdio: 'ignore'})
  const {port: targetPort} = await nextMessage<{port: number}>(peer)

  const audit = await AuditLog.open(join(dir, 'egress.jsonl'))
  const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [targetPort]}], deny: []})
  const proxy = new EgressProxy({sandboxId: 'cr_bench', policy, audit})
  const proxyServer = createServer({allowHalfOpen: true})
  proxy.listen(proxyServer)
  await new Promise<void>((resolve) => proxyServer.listen(0, '127.0.0.1', resolve))
  const proxyPort = (proxyServer.address() as AddressInfo).port

  const request = (path: PeerRequest['path'], viaProxy: boolean) => async () => {
    peer.send({path, proxyPort: viaProxy ? proxyPort : null} satisfies PeerRequest)
    const {bytes} = await nextMessage<{bytes: number}>(peer)
    if (path === '/big' && bytes < DOWNLOAD_BYTES) throw new Error(`download stopped after ${bytes} bytes`)
  }

  try {
    const latency = await compare(
      'egress: a new connection and one small GET',
      [
        {name: 'direct', run: request('/', false)},
        {name: 'through the proxy (CONNECT)', run: request('/', true)},
      ],
      {runs: Math.max(runs, 300), warmup: 20},
    )
    const throughput = await compare(
      'egress: download 256 MiB',
      [
        {name: 'direct', run: request('/big', false)},
        {name: 'through the proxy (CONNECT)', run: request('/big', true)},
      ],
      {runs: Math.min(runs, 10), warmup: 1},
    )
    const samples: RelayCpu[] = []
    for (let i = 0; i < 3; i++) {
      const cpu = process.cpuUsage()
      const start = performance.now()
      await request('/big', true)()
      const used = process.cpuUsage(cpu)
      samples.push({wall_ms: performance.now() - start, user_ms: used.user / 1000, system_ms: used.system / 1000})
    }
    const median = (key: keyof RelayCpu) => samples.map((sample) => sample[key]).sort((a, b) => a - b)[1]!
    return {latency, throughput, relayCpu: {wall_ms: median('wall_ms'), user_ms: median('user_ms'), system_ms: median('system_ms')}}
  } finally {
    peer.disconnect()
    await proxy.close()
    proxyServer.close()
    await audit.close()
    await rm(dir, {recursive: true, force: true})
  }
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve) => child.once('message', (message) => resolve(message as T)))
}
