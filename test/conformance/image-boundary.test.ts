import {expect} from 'chai'
import {execa} from 'execa'
import {randomBytes} from 'node:crypto'
import {copyFile, mkdir} from 'node:fs/promises'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {Readable} from 'node:stream'
import {extract} from 'tar-stream'

import type {BackendName} from '../../src/config/schema.js'
import {recompilePolicy, withImage} from '../../src/policy/compile.js'
import type {CompiledPolicy} from '../../src/policy/schema.js'
import {mapResolver, type RuleInput} from '../egress/fixtures.js'
import {sandboxPids, leftoverSandboxes, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {tarOf} from '../images/images.js'
import {importNodeImage} from '../images/node-image.js'
import {BACKENDS, requireBackend} from './backends.js'
import {FILTERED} from './boundary-fixtures.js'
import {direct, expectRefusal, getHead, proxyAnswer, SandboxUnderTest, via} from './sandbox.js'
import {AbstractSocketTarget, RecordingTarget, UdpTarget} from './targets.js'

const PROBE_SOURCE = fileURLToPath(new URL('sandbox-probe.mjs', import.meta.url))
const SYSCALL_PROBE = fileURLToPath(new URL('syscall-probe.c', import.meta.url))

/**
 * What differs by backend: the answer for an address outside the sandbox (gVisor's network
 * stack says EHOSTUNREACH), and cleanroom's own processes inside, which may hold fds above 2
 * (linux-ns: bwrap as pid 1 with an event fd, and the held `cleanroom-hold`; gvisor: `nsinit
 * init` as pid 1 with none, the forwarder and each exec's `nsinit run` with their sockets,
 * epoll and signal fds).
 */
const BY_BACKEND: Record<BackendName, {noRoute: string; own: string[]; init: RegExp; helpers: RegExp}> = {
  'linux-ns': {noRoute: 'ENETUNREACH', own: ['1 bwrap', '2 cleanroom-hold'], init: /^anon_inode:\[eventfd\]$/, helpers: /^$/},
  gvisor: {noRoute: 'EHOSTUNREACH', own: ['1 cleanroom-nsini'], init: /^$/, helpers: /^(socket:\[\d+\]|host:\[\d+\]|anon_inode:\[(eventpoll|signalfd)\])$/},
}

function policyOf(image: string, allow: RuleInput[], deny: RuleInput[] = []): CompiledPolicy {
  return withImage(recompilePolicy({version: 1, network_default: 'deny', allow, deny}), image)
}

/**
 * A representative part of the egress and boundary conformance suites, run in a
 * sandbox on an image (busybox and the host's node, nothing else of the host):
 * the same proxy, seccomp filter, capabilities and fd hygiene as on the host's
 * root filesystem.
 */
for (const backend of BACKENDS) describe(`conformance on an image root filesystem (${backend})`, function () {
  this.timeout(120_000)
  const dirs = tempDirs(`cleanroom-image-conf-${backend}-`)
  const differs = BY_BACKEND[backend]
  let dir = ''
  let pidsBefore = new Set<number>()
  let test: TestDaemon | undefined
  let allowed: RecordingTarget
  let denied: RecordingTarget
  let udp: UdpTarget
  let abstract: AbstractSocketTarget
  let sandbox: SandboxUnderTest
  const resolver = mapResolver({'allowed.test': ['127.0.0.1'], 'denied.test': ['127.0.0.1']})

  before(async function () {
    this.timeout(120_000)
    await requireBackend(backend)
    pidsBefore = await sandboxPids()
    dir = await dirs.make()
    const workspace = join(dir, 'workspace')
    await mkdir(workspace)
    await copyFile(PROBE_SOURCE, join(workspace, 'sandbox-probe.mjs'))
    await execa('cc', ['-O2', '-static', '-o', join(workspace, 'syscall-probe'), SYSCALL_PROBE])
    allowed = await RecordingTarget.http('allowed')
    denied = await RecordingTarget.http('denied')
    udp = await UdpTarget.start()
    abstract = await AbstractSocketTarget.start(`cr-image-conf-${randomBytes(4).toString('hex')}`)
    test = await startTestDaemon(join(dir, 'daemon'), resolver)
    const image = await importNodeImage(test.client)
    // Loopback names need an IP rule too (addresses of the host are refused otherwise).
    const policy = policyOf(image, [{host: 'allowed.test', ports: [allowed.port]}, {host: '127.0.0.1', ports: [allowed.port]}], [{host: 'denied.test'}])
    const created = await test.client.createSandbox({backend, policy, workspace_source: workspace})
    sandbox = new SandboxUnderTest(() => test!.client, created.sandbox_id)
  })

  after(async function () {
    this.timeout(30_000)
    const failures: unknown[] = []
    const attempt = async (step: () => Promise<unknown>) => step().catch((error: unknown) => failures.push(error))
    await attempt(async () => test?.daemon.close({shutdownSandboxes: true}))
    for (const target of [allowed, denied, udp, abstract]) await attempt(async () => target?.close())
    await attempt(async () => expect(await leftoverSandboxes(pidsBefore, dir), 'sandboxes of this suite still running').to.deep.equal([]))
    await attempt(() => dirs.cleanup())
    if (failures.length > 0) throw failures[0]
  })

  beforeEach(async () => {
    for (const target of [allowed, denied, udp, abstract]) target.reset()
    await sandbox.markAudit()
  })

  it('runs on the image: its os-release, no host tools', async () => {
    const ran = await sandbox.sh('cat /etc/os-release; test -e /usr/bin/git || echo no git; test -e /usr/lib/node_modules/npm || echo no npm')
    expect(ran.stdout).to.equal('NAME=cleanroom-node-test\nno git\nno npm\n')
  })

  it('an allowed name goes through the proxy (HTTP and SOCKS5); a denied one and an unlisted one are refused', async () => {
    const [get, socks, refused, unlisted] = await sandbox.probe([
      via.get(`http://allowed.test:${allowed.port}/image`),
      via.socks('domain', 'allowed.test', allowed.port, getHead('/socks', `allowed.test:${allowed.port}`)),
      via.get(`http://denied.test:${denied.port}/secret`, `denied.test:${denied.port}`),
      via.get(`http://sneaky.test:${allowed.port}/secret`),
    ])
    expect(proxyAnswer(get!)).to.deep.include({status: 200, body: 'hello from allowed: GET /image'})
    expect(socks!.received).to.include('hello from allowed: GET /socks')
    expectRefusal(refused!, 403, 'denied_by_rule', 'denied.test')
    expectRefusal(unlisted!, 403, 'host_not_allowed', 'sneaky.test')
    await sandbox.expectAudit([
      {host: 'allowed.test', port: allowed.port, action: 'allow', reason: 'allowed_by_rule', protocol: 'http'},
      {host: 'allowed.test', port: allowed.port, action: 'allow', reason: 'allowed_by_rule', protocol: 'socks5'},
      {host: 'denied.test', port: denied.port, action: 'deny', reason: 'denied_by_rule'},
      {host: 'sneaky.test', port: allowed.port, action: 'deny', reason: 'host_not_allowed'},
    ])
    expect(allowed.requests.map((request) => request.url)).to.deep.equal(['/image', '/socks'])
    expect(denied.connections).to.deep.equal([])
  })

  it('with every proxy variable unset, raw TCP, UDP, DNS and the host\'s abstract sockets reach nothing', async () => {
    const results = await sandbox.probe(
      [
        {mode: 'lookup', args: {name: 'allowed.test'}},
        direct('127.0.0.1', allowed.port),
        direct('8.8.8.8', 443),
        {mode: 'udp', args: {host: '127.0.0.1', port: udp.port, connect: true}},
        {mode: 'udp', args: {host: '8.8.8.8', port: 53}},
        {mode: 'unix', args: {abstract: abstract.name}},
        {mode: 'unix', args: {path: test!.socketPath}},
      ],
      {clearEnv: true},
    )
    const [lookup, loopback, remote, udpLoopback, udpRemote, abstractSocket, daemonSocket] = results
    expect(lookup!.error).to.be.oneOf(['ENOTFOUND', 'EAI_AGAIN'])
    expect(loopback).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    expect(remote).to.deep.include({connected: false, error: differs.noRoute})
    expect(udpLoopback!.sent).to.equal('sent')
    expect(udpRemote!.sent).to.equal(differs.noRoute)
    expect(abstractSocket).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    expect(daemonSocket).to.deep.include({connected: false, error: 'ENOENT'})
    await sleep(100)
    expect(allowed.connections).to.deep.equal([])
    expect(udp.datagrams).to.deep.equal([])
    expect(abstract.connections).to.equal(0)
  })

  it('the same seccomp filter: every refused system call fails, the rest go through', async () => {
    const ran = await sandbox.sh('./syscall-probe')
    expect(ran.exit_code, ran.stderr).to.equal(0)
    expect(JSON.parse(ran.stdout)).to.deep.equal(FILTERED)
    const userns = await sandbox.sh('unshare -Ur true')
    expect(userns.exit_code).not.to.equal(0)
  })

  it("no capabilities, and no process inside holds an fd above 2 but cleanroom's own", async () => {
    const caps = await sandbox.sh("grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status")
    // Every set the kernel shows is empty (gVisor's /proc has no CapAmb line).
    const sets = caps.stdout.trim().split('\n').map((line) => line.split(/\s+/))
    expect(sets.map(([name]) => name)).to.include.members(['CapEff:', 'CapPrm:', 'CapBnd:'])
    expect(sets.map(([, value]) => value)).to.satisfy((values: string[]) => values.every((value) => value === '0000000000000000'))
    const script = `const fs = require('fs'); const seen = {}
      for (const pid of fs.readdirSync('/proc').filter((name) => /^\\d+$/.test(name) && Number(name) !== process.pid)) {
        try {
          const fds = {}
          for (const fd of fs.readdirSync('/proc/' + pid + '/fd')) fds[fd] = fs.readlinkSync('/proc/' + pid + '/fd/' + fd)
          seen[pid + ' ' + fs.readFileSync('/proc/' + pid + '/comm', 'utf8').trim()] = fds
        } catch {}
      }
      console.log(JSON.stringify(seen))`
    const ran = await test!.client.run(sandbox.id, {argv: ['node', '-e', script], env: {}})
    expect(ran.exit_code, ran.stderr).to.equal(0)
    const seen = JSON.parse(ran.stdout) as Record<string, Record<string, string>>
    expect(Object.keys(seen), 'the processes looked at').to.include.members(differs.own)
    for (const [process, fds] of Object.entries(seen)) {
      const targets = Object.entries(fds).filter(([fd]) => Number(fd) > 2).map(([, target]) => target)
      const own = process.startsWith('1 ') ? differs.init : process.endsWith(' cleanroom-nsini') ? differs.helpers : /^$/
      expect(targets, process).to.satisfy((all: string[]) => all.every((target) => own.test(target)))
    }
  })

  it("copies files in and out with the image's own mkdir, stat and tar (busybox's)", async () => {
    const archive = await tarOf([{name: 'in/', type: 'directory'}, {name: 'in/note.txt', content: 'copied in\n'}])
    await test!.client.putArchive(sandbox.id, '/tmp/deep/dir', Readable.from([archive]))
    expect((await sandbox.sh('cat /tmp/deep/dir/in/note.txt')).stdout).to.equal('copied in\n')
    const out = await test!.client.getArchive(sandbox.id, '/tmp/deep/dir/in')
    const names: string[] = []
    const entries = extract()
    out.pipe(entries)
    for await (const entry of entries) {
      names.push(entry.header.name)
      entry.resume()
    }
    expect(names.map((name) => name.replace(/\/$/, ''))).to.include.members(['in', 'in/note.txt'])
  })

  it('the generated /etc files win over the image\'s and cannot be changed', async () => {
    const ran = await sandbox.sh('cat /etc/resolv.conf /etc/hostname; echo nameserver 8.8.8.8 > /etc/resolv.conf; grep -c nameserver /etc/resolv.conf')
    expect(ran.stdout).to.match(/^# cleanroom: this sandbox has no DNS resolver/)
    expect(ran.stdout.trim().split('\n').at(-1)).to.equal('0')
  })
})
