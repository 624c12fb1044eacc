import {expect} from 'chai'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {cliRepoSuite} from '../helpers/cli-repo.js'

describe('cleanroom exec through the egress proxy, sandbox logs --egress, --dangerously-allow-all (CLI)', function () {
  this.timeout(60_000)
  let server: Server
  let port: number
  let hits = 0

  before(async () => {
    server = createServer((_req, res) => {
      hits++
      res.end('hello through the proxy\n')
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    port = (server.address() as AddressInfo).port
  })
  after(() => server.close())

  // Loopback is reachable only through an explicit IP rule for it, on that port.
  const suite = cliRepoSuite('cleanroom-egress-cli-', async ({repo}) =>
    writeFile(join(repo, 'cleanroom.yaml'), `version: 1\nsandbox:\n  network:\n    allow:\n      - host: 127.0.0.1\n        ports: [${port}]\n        reason: the test server\n`),
  )
  const cli = (args: string[]) => suite.cli(args)
  // curl would skip the proxy for 127.0.0.1 (NO_PROXY): name it explicitly.
  const viaProxy = (url: string) => ['curl', '-sS', '--noproxy', '', '-x', 'http://127.0.0.1:3128', '-o', '-', '-w', '\n%{http_code}', url]

  it('reaches an allowed destination through the proxy, records it, and shows the counts', async () => {
    const kept = await cli(['exec', '--keep', '--', ...viaProxy(`http://127.0.0.1:${port}/`)])
    expect(kept.exitCode, kept.stderr).to.equal(0)
    expect(kept.stdout).to.equal('hello through the proxy\n\n200')
    expect(hits).to.equal(1)
    const id = /sandbox_id=(cr_\w+)/.exec(kept.stderr)![1]!

    const denied = await cli(['exec', '--sandbox-id', id, '--', ...viaProxy(`http://127.0.0.1:${port + 1}/`)])
    expect(denied.stdout).to.contain(`host_not_allowed: 127.0.0.1:${port + 1} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`)
    expect(denied.stdout).to.match(/403$/)

    const direct = await cli(['exec', '--sandbox-id', id, '--', 'curl', '-sS', '--noproxy', '*', `http://127.0.0.1:${port}/`])
    expect(direct.exitCode).to.not.equal(0)
    expect(hits).to.equal(1)

    const logs = await cli(['sandbox', 'logs', id, '--egress', '--json'])
    const events = logs.stdout.split('\n').map((line) => JSON.parse(line) as {action: string; port: number; reason: string})
    expect(events.map((event) => [event.action, event.port])).to.deep.equal([
      ['allow', port],
      ['deny', port + 1],
    ])
    const text = await cli(['sandbox', 'logs', id, '--egress'])
    expect(text.stdout).to.match(new RegExp(`ALLOW  127\\.0\\.0\\.1:${port}  allowed_by_rule`))
    expect((await cli(['sandbox', 'inspect', id])).stdout).to.contain('egress:    1 allowed, 1 denied')
    await cli(['sandbox', 'rm', id])
  })

  it('has no DNS and no resolver inside', async () => {
    const result = await cli(['exec', '--', 'sh', '-c', 'getent hosts registry.npmjs.org; echo "rc=$?"; grep -c nameserver /etc/resolv.conf'])
    expect(result.stdout).to.equal('rc=2\n0')
  })

  it('--dangerously-allow-all warns every time, still refuses the host itself, and is refused with --sandbox-id', async () => {
    const result = await cli(['exec', '--dangerously-allow-all', '--', ...viaProxy(`http://127.0.0.1:${port + 2}/`)])
    expect(result.stderr).to.contain('warning: --dangerously-allow-all')
    // Loopback stays closed without an IP rule for that port, even when everything else is allowed.
    expect(result.stdout).to.match(/403$/)
    const reuse = await cli(['exec', '--dangerously-allow-all', '--sandbox-id', 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA', '--', 'true'])
    expect(reuse.exitCode).to.equal(2)
    expect(reuse.stderr).to.contain('--dangerously-allow-all cannot be used with --sandbox-id')
  })
})
