/**
 * The credential gateway's cost on loopback: time to the first byte of a
 * streamed completion through a route, and the throughput of a 256 MiB event
 * stream through it, each against the same request made directly to the fake
 * upstream, alternated. The fake upstream and the client run in another
 * process (bench/gateway-peer.ts), the gateway in this one, as the daemon and
 * an agent in a sandbox would; connections are kept alive on both legs.
 */
import {type ChildProcess, fork} from 'node:child_process'
import {mkdtemp, rm} from 'node:fs/promises'
import {type AddressInfo, createServer} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {SandboxGateway} from '../src/credentials/gateway.js'
import {phantomSecret} from '../src/credentials/phantom.js'
import {SecretResolver} from '../src/credentials/secrets.js'
import {routePhantom, type SandboxCredentialState} from '../src/credentials/state.js'
import {AuditLog} from '../src/egress/audit.js'
import {dialChecked} from '../src/egress/dial.js'
import {recompilePolicy} from '../src/policy/compile.js'
import {type GatewayPeerRequest, STREAM_BYTES} from './gateway-shared.js'
import {compare, type Comparison, renderComparison, type Stats, stats} from './harness.js'

export async function gatewayComparisons(runs: number): Promise<{firstByte: Comparison; throughput: Comparison; streamCpu: Stats}> {
  const dir = await mkdtemp(join(tmpdir(), 'cleanroom-bench-gateway-'))
  const peer = fork(fileURLToPath(new URL('gateway-peer.ts', import.meta.url)), {execArgv: ['--import', 'tsx'], stdio: 'ignore'})
  const {port: upstreamPort} = await nextMessage<{port: number}>(peer)

  const audit = await AuditLog.open(join(dir, 'egress.jsonl'))
  const policy = recompilePolicy({version: 1, network_default: 'deny', allow: [{host: '127.0.0.1', ports: [upstreamPort]}], deny: []})
  const state: SandboxCredentialState = {
    write_back: true,
    routes: [
      {
        spec: {name: 'anthropic', upstream: `http://127.0.0.1:${upstreamPort}`, header: 'x-api-key', format: '{}', secret: [{provided: 'real-key', from: 'the benchmark'}], env: {}},
        secret: phantomSecret(),
        active: true,
      },
    ],
    logins: [],
  }
  const gateway = new SandboxGateway(
    {
      sandboxId: 'cr_bench',
      sandboxDir: dir,
      sandboxHome: '/home/cleanroom',
      stateRoot: dir,
      audit,
      // As in the daemon with egress.audit_failure: deny, the default: each request first checks that it can be logged.
      auditRefusal: () => audit.unavailable(),
      secrets: new SecretResolver(),
      dial: (host, port) => dialChecked(host, port, {policy}),
      roots: [],
    },
    state,
  )
  const listener = createServer({allowHalfOpen: true}, (socket) => gateway.handle(socket))
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve))
  const through = {url: `http://127.0.0.1:${(listener.address() as AddressInfo).port}/anthropic`, phantom: routePhantom(state.routes[0]!)}

  // The gateway's own CPU time per stream (this process runs nothing else meanwhile): what it costs a loaded machine.
  const streamCpuMs: number[] = []
  const request = (kind: GatewayPeerRequest['kind'], viaGateway: boolean) => async () => {
    const cpuBefore = process.cpuUsage()
    peer.send({kind, gateway: viaGateway ? through : null} satisfies GatewayPeerRequest)
    const {bytes} = await nextMessage<{bytes: number}>(peer)
    if (kind === 'stream' && bytes < STREAM_BYTES) throw new Error(`the stream stopped after ${bytes} bytes`)
    const cpu = process.cpuUsage(cpuBefore)
    if (kind === 'stream' && viaGateway) streamCpuMs.push((cpu.user + cpu.system) / 1000)
  }

  try {
    const firstByte = await compare(
      'credential gateway: first byte of a streamed completion',
      [
        {name: 'direct to the upstream', run: request('first-byte', false)},
        {name: 'through the gateway route', run: request('first-byte', true)},
      ],
      {runs: Math.max(runs, 300), warmup: 20},
    )
    const throughput = await compare(
      'credential gateway: 256 MiB event stream',
      [
        {name: 'direct to the upstream', run: request('stream', false)},
        {name: 'through the gateway route', run: request('stream', true)},
      ],
      {runs: Math.min(runs, 10), warmup: 1},
    )
    // The warm-up stream is left out, as the comparison leaves it out.
    return {firstByte, throughput, streamCpu: stats(streamCpuMs.slice(1))}
  } finally {
    peer.disconnect()
    listener.close()
    await gateway.close()
    await audit.close()
    await rm(dir, {recursive: true, force: true})
  }
}

function nextMessage<T>(child: ChildProcess): Promise<T> {
  return new Promise((resolve) => child.once('message', (message) => resolve(message as T)))
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const bench = await gatewayComparisons(Number(process.env.BENCH_RUNS ?? 10))
  console.log(renderComparison(bench.firstByte))
  console.log(renderComparison(bench.throughput))
  const ratio = bench.throughput.results[0]!.stats.median / bench.throughput.results[1]!.stats.median
  console.log(`## gateway: stream throughput ${ratio.toFixed(2)}x direct (goal >= 0.9x: ${ratio >= 0.9 ? 'MET' : 'MISSED'}); the gateway's CPU per 256 MiB stream: median ${bench.streamCpu.median.toFixed(0)} ms`)
}
