import {expect} from 'chai'
import {execFile} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {createSocket} from 'node:dgram'
import {copyFile, mkdir, readFile, writeFile} from 'node:fs/promises'
import {connect} from 'node:net'
import {networkInterfaces} from 'node:os'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

import type {AuditEvent} from '../../src/egress/audit.js'
import type {BackendName} from '../../src/config/schema.js'
import {recompilePolicy} from '../../src/policy/compile.js'
import type {CompiledPolicy} from '../../src/policy/schema.js'
import {mapResolver, type RuleInput} from '../egress/fixtures.js'
import {sandboxPids, startTestDaemon, type TestDaemon} from '../helpers/daemon.js'
import {tempDirs} from '../helpers/tmp.js'
import {OtherHost} from './other-host.js'
import {
  authority,
  connectHead,
  direct,
  expectRefusal,
  getHead,
  hostNameservers,
  leftoverSandboxes,
  sandboxesOf,
  PROBE,
  proxyAnswer,
  SandboxUnderTest,
  until,
  via,
} from './sandbox.js'
import {BACKENDS, requireBackend} from './backends.js'
import {AbstractSocketTarget, RecordingTarget, UdpTarget} from './targets.js'

const run = promisify(execFile)
const PROBE_SOURCE = fileURLToPath(new URL('sandbox-probe.mjs', import.meta.url))


/** The other host's ports: HTTP, and a DNS server on TCP and UDP 53. */
const OTHER_HTTP = 8080
const DNS = 53

/** The whole suite runs in well under this; a hung attempt fails the test instead of the run. */
const SUITE_BUDGET_MS = 60_000

function policyOf(allow: RuleInput[], deny: RuleInput[] = []): CompiledPolicy {
  return recompilePolicy({version: 1, network_default: 'deny', allow, deny})
}

/** The host's own addresses, as the proxy sees them (link-local ones without their zone), each once. */
function hostAddresses(): string[] {
  return [...new Set(Object.values(networkInterfaces()).flatMap((infos) => (infos ?? []).map((info) => info.address.split('%')[0]!)))]
}

const isLinkLocal = (address: string): boolean => /^fe[89ab]/i.test(address)
const isLoopback = (address: string): boolean => address === '::1' || address.startsWith('127.')
/**
 * What the sandbox's kernel answers for an address outside it: there is no route. Linux
 * says so with ENETUNREACH, gVisor's network stack with EHOSTUNREACH (errno 113, not 101).
 */
const NO_ROUTE = {
  'linux-ns': {code: 'ENETUNREACH', errno: '101', linkLocal: 'EINVAL'},
  gvisor: {code: 'EHOSTUNREACH', errno: '113', linkLocal: 'ENETUNREACH'},
} as const

/** The answer for an address outside the sandbox (Linux cannot dial a link-local one without a zone at all: EINVAL). */
const unroutable = (backend: BackendName, address: string): string => (isLinkLocal(address) ? NO_ROUTE[backend].linkLocal : NO_ROUTE[backend].code)

/** A DNS query (A record) with the two-byte length prefix of DNS over TCP, as latin1 text for the probe. */
function dnsOverTcpQuery(name: string): string {
  const header = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0])
  const labels = name.split('.').map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)]))
  const message = Buffer.concat([header, ...labels, Buffer.from([0, 0, 1, 0, 1])])
  const length = Buffer.from([message.length >> 8, message.length & 0xff])
  return Buffer.concat([length, message]).toString('latin1')
}

/** A self-signed certificate for `allowed.test` (also the CA the sandbox's git trusts). */
async function selfSignedCertificate(dir: string): Promise<{key: string; cert: string}> {
  const key = join(dir, 'key.pem')
  const cert = join(dir, 'cert.pem')
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=allowed.test',
    '-addext', 'subjectAltName=DNS:allowed.test', '-keyout', key, '-out', cert]).catch((error: unknown) => {
    throw new Error(`openssl could not make the test's TLS certificate (the suite needs openssl on the host): ${String(error)}`)
  })
  return {key: await readFile(key, 'utf8'), cert: await readFile(cert, 'utf8')}
}

/** A bare repository served as files (dumb HTTP): one commit with README. */
async function bareRepository(dir: string): Promise<string> {
  const work = join(dir, 'work')
  const git = (cwd: string, ...args: string[]) => run('git', ['-c', 'user.name=t', '-c', 'user.email=t@t', '-c', 'init.defaultBranch=main', ...args], {cwd})
  await mkdir(work, {recursive: true})
  await git(work, 'init', '-q')
  await writeFile(join(work, 'README'), 'cloned through the egress proxy\n')
  await git(work, 'add', 'README')
  await git(work, 'commit', '-q', '-m', 'first')
  const root = join(dir, 'served')
  await mkdir(root)
  await git(dir, 'clone', '-q', '--bare', work, join(root, 'repo.git'))
  await git(join(root, 'repo.git'), 'update-server-info')
  return root
}

for (const backend of BACKENDS) {
  describe(`egress conformance (${backend})`, function () {
    this.timeout(SUITE_BUDGET_MS)
    const dirs = tempDirs('cleanroom-conf-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined
    let other: OtherHost | undefined
    const targets: Array<{close(): Promise<void>}> = []

    // Host targets: the allowed web server, one never allowed, one on a port no rule lists,
    // one on every host address (`::`), the git HTTPS server, a UDP listener, an abstract socket.
    let allowedWeb: RecordingTarget
    let deniedWeb: RecordingTarget
    let unlistedWeb: RecordingTarget
    let everyAddress: RecordingTarget
    let gitTls: RecordingTarget
    let udp: UdpTarget
    let abstract: AbstractSocketTarget

    let main: SandboxUnderTest
    let peer: SandboxUnderTest
    let open: SandboxUnderTest
    let nameOnly: SandboxUnderTest
    let otherMark = 0
    /** The proxies' DNS: names the test controls (filled in once the other host has its address). */
    const names: Record<string, string[]> = {}
    const resolver = mapResolver(names)

    const client = () => test!.client
    const ports = () => ({A: allowedWeb.port, D: deniedWeb.port, U: unlistedWeb.port, P: everyAddress.port, T: gitTls.port})

    /** Asserts no target got a connection, a datagram or a request since the test began. */
    async function expectUntouched(...which: Array<RecordingTarget | UdpTarget | AbstractSocketTarget | OtherHost>): Promise<void> {
      // A proxy that dialled despite answering a refusal would do it right away: give it that moment.
      await sleep(100)
      for (const target of which) {
        if (target instanceof RecordingTarget) expect(target.connections, `connections that reached ${target.name}`).to.deep.equal([])
        else if (target instanceof UdpTarget) expect(target.datagrams, 'datagrams that reached the host').to.deep.equal([])
        else if (target instanceof AbstractSocketTarget) expect(target.connections, 'connections to the abstract socket').to.equal(0)
        else expect(target.since(otherMark), 'what reached the other host').to.deep.equal([])
      }
    }

    before(async function () {
      this.timeout(30_000)
      await requireBackend(backend)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      const workspace = join(dir, 'workspace')
      await mkdir(workspace)
      await copyFile(PROBE_SOURCE, join(workspace, 'sandbox-probe.mjs'))
      const tls = await selfSignedCertificate(dir)
      await writeFile(join(workspace, 'ca.pem'), tls.cert)

      allowedWeb = await RecordingTarget.http('allowed')
      deniedWeb = await RecordingTarget.http('denied')
      unlistedWeb = await RecordingTarget.http('unlisted-port')
      everyAddress = await RecordingTarget.http('every-host-address', '::')
      gitTls = await RecordingTarget.https('git-https', tls, await bareRepository(dir))
      udp = await UdpTarget.start()
      abstract = await AbstractSocketTarget.start(`cr-conf-${randomBytes(4).toString('hex')}`)
      targets.push(allowedWeb, deniedWeb, unlistedWeb, everyAddress, gitTls, udp, abstract)
      other = await OtherHost.create({tcp: [OTHER_HTTP, DNS], udp: [DNS]})

      const loopback = ['127.0.0.1']
      Object.assign(names, {
        'allowed.test': loopback,
        'api.allowed.test': loopback,
        'blocked.allowed.test': loopback,
        'denied.test': loopback,
        'rebind.test': loopback,
        'sneaky.test': loopback,
        localhost: ['127.0.0.1', '::1'],
        'other.test': [other.address],
        'unlisted.test': [other.address],
        'evil.test': [other.address],
      })
      test = await startTestDaemon(join(dir, 'daemon'), resolver)

      const {A, T, P} = ports()
      // Broad network rules (each half of the address space) on P and 80: the decision allows,
      // so what refuses loopback, the host's own addresses and metadata is the address check.
      const broad = ['0.0.0.0/1', '128.0.0.0/1', '::/1', '8000::/1'].map((host) => ({host, ports: [P, 80]}))
      const mainPolicy = policyOf(
        [
          {host: 'allowed.test', ports: [A, T]},
          {host: '127.0.0.1', ports: [A, T]},
          {host: '*.allowed.test', ports: [A]},
          {host: 'other.test', ports: [OTHER_HTTP]},
          {host: other.cidr, ports: [OTHER_HTTP, P]},
          {host: 'localhost', ports: [P]},
          {host: 'rebind.test', ports: [P]},
          ...broad,
        ],
        [{host: 'denied.test'}, {host: 'blocked.allowed.test'}],
      )
      const create = async (policy: CompiledPolicy, allowAll = false) => {
        const sandbox = await client().createSandbox({backend, policy, workspace_source: workspace, allow_all: allowAll})
        return new SandboxUnderTest(client, sandbox.sandbox_id)
      }
      main = await create(mainPolicy)
      peer = await create(policyOf([{host: 'allowed.test', ports: [A]}, {host: '127.0.0.1', ports: [A]}]))
      open = await create(policyOf([], [{host: 'evil.test'}, {host: other.cidr, ports: [DNS]}]), true)
      // Name rules only, no IP rule: names that resolve to loopback must stay refused.
      nameOnly = await create(policyOf([{host: 'allowed.test', ports: [A]}, {host: 'localhost', ports: [A]}]))
    })

    after(async function () {
      this.timeout(30_000)
      // Every step runs even when one before it failed; the first failure is reported after all of them.
      const failures: unknown[] = []
      const attempt = async (step: () => Promise<unknown>) => step().catch((error: unknown) => failures.push(error))
      await attempt(async () => test?.daemon.close({shutdownSandboxes: true}))
      for (const target of targets.splice(0)) await attempt(() => target.close())
      await attempt(async () => other?.destroy())
      await attempt(async () => expect(await leftoverSandboxes(sandboxesBefore, dir), 'bwrap processes of this suite still running').to.deep.equal([]))
      await attempt(() => dirs.cleanup())
      if (failures.length > 0) throw failures[0]
    })

    beforeEach(async () => {
      for (const target of [allowedWeb, deniedWeb, unlistedWeb, everyAddress, gitTls, udp, abstract]) target.reset()
      otherMark = other!.events.length
      for (const sandbox of [main, peer, open, nameOnly]) await sandbox.markAudit()
    })

    it('control: every target records what reaches it (so "nothing reached it" means something)', async () => {
      const touch = (host: string, port?: number) =>
        new Promise<void>((resolve, reject) => {
          const socket = port === undefined ? connect({path: host}) : connect({host, port})
          socket.once('connect', () => socket.end(() => resolve()))
          socket.once('error', reject)
        })
      for (const target of [allowedWeb, deniedWeb, unlistedWeb, gitTls]) await touch('127.0.0.1', target.port)
      const own = hostAddresses().filter((address) => !isLinkLocal(address))
      for (const address of own) await touch(address, everyAddress.port)
      await touch(other!.address, OTHER_HTTP)
      await touch(other!.address, DNS)
      const datagram = createSocket('udp4')
      await new Promise<void>((resolve) => datagram.send('control', udp.port, '127.0.0.1', () => resolve()))
      await new Promise<void>((resolve) => datagram.send('control', DNS, other!.address, () => resolve()))
      datagram.close()
      await touch(`\0${abstract.name}`)
      await until(async () => udp.datagrams.length === 1 && abstract.connections === 1 && other!.since(otherMark).length === 3 && everyAddress.connections.length === own.length, 3000, 'every target to record its connection')
      for (const target of [allowedWeb, deniedWeb, unlistedWeb, gitTls]) expect(target.connections, target.name).to.have.length(1)
      expect(other!.since(otherMark).map((event) => `${event.kind}:${event.port}`).sort()).to.deep.equal(['tcp:53', `tcp:${OTHER_HTTP}`, 'udp:53'])
      // And the leak check at the end sees this suite's sandboxes.
      expect(await sandboxesOf(sandboxesBefore, dir)).to.have.length.of.at.least(4)
    })

    describe('bypass attempts: nothing reaches the target', () => {
      it('01 direct TCP to the host\'s 127.0.0.1, ignoring the proxy settings (--noproxy), is refused', async () => {
        const {A, D, P} = ports()
        const results = await main.probe([direct('127.0.0.1', A), direct('127.0.0.1', D), direct('::1', P), direct('localhost', A)])
        for (const result of results) expect(result, JSON.stringify(result)).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        if (await main.has('curl')) {
          const curl = await main.sh(`curl -sS --noproxy '*' -m 5 http://127.0.0.1:${A}/`)
          expect(curl.exit_code, curl.stderr).to.equal(7)
        }
        await expectUntouched(allowedWeb, deniedWeb, everyAddress)
      })

      it('02 direct TCP to another host\'s address, or the host\'s own, has no route', async () => {
        const {P} = ports()
        const outside = [...new Set([other!.address, ...hostAddresses().filter((address) => !isLoopback(address)), '8.8.8.8'])]
        const results = await main.probe([direct(other!.address, OTHER_HTTP), ...outside.map((address) => direct(address, P))])
        const targetsTried = [other!.address, ...outside]
        for (const [i, result] of results.entries()) {
          expect(result, targetsTried[i]).to.deep.include({connected: false, error: unroutable(backend, targetsTried[i]!)})
        }
        if (await main.has('curl')) {
          const curl = await main.sh(`curl -sS --noproxy '*' -m 5 http://${other!.address}:${OTHER_HTTP}/`)
          expect(curl.exit_code, curl.stderr).to.equal(7)
        }
        await expectUntouched(everyAddress, other!)
      })

      it('03 with every proxy variable unset, raw sockets reach nothing', async () => {
        const {A} = ports()
        const [name, loopback, remote] = await main.probe([{mode: 'lookup', args: {name: 'allowed.test'}}, direct('127.0.0.1', A), direct(other!.address, OTHER_HTTP)], {clearEnv: true})
        expect(name!.error).to.be.oneOf(['ENOTFOUND', 'EAI_AGAIN'])
        expect(loopback).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        expect(remote).to.deep.include({connected: false, error: NO_ROUTE[backend].code})
        if (await main.has('python3')) {
          const script = `import socket\ns = socket.socket()\ntry:\n    s.connect(('${other!.address}', ${OTHER_HTTP}))\n    print('connected')\nexcept OSError as e:\n    print(e.errno)`
          const python = await main.sh(`env -i python3 -c "${script}"`)
          expect(python.stdout.trim(), python.stderr).to.equal(NO_ROUTE[backend].errno)
        }
        await expectUntouched(allowedWeb, other!)
      })

      it('04 UDP datagrams to any address go nowhere', async () => {
        const outside = [...new Set([other!.address, ...hostAddresses().filter((address) => !isLinkLocal(address) && !isLoopback(address))])]
        const results = await main.probe([
          {mode: 'udp', args: {host: '127.0.0.1', port: udp.port, connect: true}},
          {mode: 'udp', args: {host: '::1', port: udp.port, connect: true}},
          {mode: 'udp', args: {host: other!.address, port: DNS}},
          ...outside.map((host) => ({mode: 'udp' as const, args: {host, port: udp.port}})),
        ])
        const [loopback4, loopback6, ...away] = results
        // Loopback is the sandbox's own: the datagram is sent, to nobody there (port unreachable), and the host hears nothing.
        for (const loopback of [loopback4, loopback6]) {
          expect(loopback, JSON.stringify(loopback)).to.deep.include({sent: 'sent'})
          expect(loopback!.errors, JSON.stringify(loopback)).to.include('ECONNREFUSED')
        }
        for (const result of away) expect(result.sent, JSON.stringify(result)).to.equal(NO_ROUTE[backend].code)
        await expectUntouched(udp, other!)
      })

      it('05 DNS queries over UDP reach no resolver (the host\'s, a public one, the other host\'s)', async () => {
        const servers = [...(await hostNameservers()), '8.8.8.8', other!.address]
        const results = await main.probe([
          ...servers.map((server) => ({mode: 'dns' as const, args: {server, name: 'allowed.test'}})),
          ...servers.map((host) => ({mode: 'udp' as const, args: {host, port: DNS}})),
          {mode: 'dns', args: {server: '127.0.0.1', name: 'allowed.test'}},
        ])
        for (const result of results.slice(0, servers.length)) expect(result, JSON.stringify(result)).to.have.property('error').that.is.a('string')
        for (const [i, result] of results.slice(servers.length, 2 * servers.length).entries()) {
          // A resolver on loopback (systemd-resolved's 127.0.0.53) would be the sandbox's own loopback: nobody there.
          expect(result.sent, servers[i]).to.equal(isLoopback(servers[i]!) ? 'sent' : unroutable(backend, servers[i]!))
        }
        expect(results.at(-1), 'a resolver on the sandbox\'s loopback').to.have.property('error').that.is.a('string')
        await expectUntouched(other!)
      })

      it('06 DNS over TCP port 53 reaches no resolver', async () => {
        const query = dnsOverTcpQuery('allowed.test')
        const servers = [...(await hostNameservers()), '8.8.8.8', other!.address]
        const results = await main.probe([...servers.map((server) => direct(server, DNS, query)), direct('127.0.0.1', DNS, query)])
        for (const [i, result] of results.slice(0, -1).entries()) {
          expect(result, servers[i]).to.deep.include({connected: false, error: isLoopback(servers[i]!) ? 'ECONNREFUSED' : unroutable(backend, servers[i]!)})
        }
        expect(results.at(-1)).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        await expectUntouched(other!)
      })

      it('07 no name resolves inside: getent hosts fails, resolv.conf names no server', async () => {
        for (const name of ['allowed.test', 'other.test', 'registry.npmjs.org', 'example.com']) {
          const getent = await main.sh(`getent hosts ${name}`)
          expect({name, exit: getent.exit_code, out: getent.stdout}).to.deep.equal({name, exit: 2, out: ''})
        }
        const resolv = await main.sh('cat /etc/resolv.conf')
        expect(resolv.stdout).not.to.match(/^\s*nameserver/m)
        await expectUntouched(other!)
      })

      it('08 IPv6 literals ([::1], [::127.0.0.1]) through the proxy are refused', async () => {
        const {D, P} = ports()
        const [loopback, unlisted, absolute, compatible, socks] = await main.probe([
          via.connect(`[::1]:${P}`),
          via.connect(`[::1]:${D}`),
          via.get(`http://[::1]:${P}/`),
          via.connect(`[::127.0.0.1]:${P}`),
          via.socks('ipv6', '::1', P),
        ])
        // ::/1 allows [::1]:P by CIDR; the address check refuses it all the same.
        expect(expectRefusal(loopback!, 403, 'forbidden_address', '[::1]:P').body).to.include('a loopback address')
        // The program is told host_not_allowed; the audit log keeps that a rule (::/1) named the address on other ports.
        expectRefusal(unlisted!, 403, 'host_not_allowed', '[::1]:D')
        expectRefusal(absolute!, 403, 'forbidden_address', 'http://[::1]:P/')
        expect(expectRefusal(compatible!, 403, 'forbidden_address', '[::127.0.0.1]:P').body).to.include('a reserved address')
        expect(socks).to.deep.include({method: 0, reply: 0x02})
        await main.expectAudit([
          {host: '::1', port: P, action: 'deny', reason: 'forbidden_address', error: 'loopback', protocol: 'connect'},
          {host: '::1', port: D, action: 'deny', reason: 'port_not_allowed', rule: '::/1'},
          {host: '::1', port: P, action: 'deny', protocol: 'http'},
          {host: '::1', port: P, action: 'deny', protocol: 'socks5'},
        ])
        await expectUntouched(everyAddress, deniedWeb)
      })

      it('09 IPv4-mapped IPv6 literals ([::ffff:127.0.0.1]) are their IPv4 address, and refused', async () => {
        const {D, P} = ports()
        const [mapped, hex, unlisted, socks] = await main.probe([
          via.connect(`[::ffff:127.0.0.1]:${P}`),
          via.connect(`[::ffff:7f00:1]:${P}`),
          via.connect(`[::ffff:127.0.0.1]:${D}`),
          via.socks('ipv6', '::ffff:127.0.0.1', P),
        ])
        expectRefusal(mapped!, 403, 'forbidden_address', '[::ffff:127.0.0.1]:P')
        expectRefusal(hex!, 403, 'forbidden_address', '[::ffff:7f00:1]:P')
        expectRefusal(unlisted!, 403, 'host_not_allowed', '[::ffff:127.0.0.1]:D')
        expect(socks).to.deep.include({reply: 0x02})
        await main.expectAudit([
          {host: '127.0.0.1', port: P, action: 'deny', reason: 'forbidden_address', error: 'loopback'},
          {host: '127.0.0.1', port: P, action: 'deny', reason: 'forbidden_address'},
          {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', rule: '127.0.0.1'},
          {host: '127.0.0.1', port: P, action: 'deny', protocol: 'socks5'},
        ])
        await expectUntouched(everyAddress, deniedWeb)
      })

      it('10 CONNECT to an allowed host on a port its rule does not list is refused', async () => {
        const {U} = ports()
        const [byName, byAddress, absolute, socks] = await main.probe([
          via.connect(`allowed.test:${U}`),
          via.connect(`127.0.0.1:${U}`),
          via.get(`http://allowed.test:${U}/`, `allowed.test:${U}`),
          via.socks('domain', 'allowed.test', U),
        ])
        // To the program an unlisted port is a destination not allowed; the audit log says which rule lacked the port.
        const answer = expectRefusal(byName!, 403, 'host_not_allowed', 'allowed.test:U')
        expect(answer.body).to.equal(
          `host_not_allowed: allowed.test:${U} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`,
        )
        expectRefusal(byAddress!, 403, 'host_not_allowed', '127.0.0.1:U')
        expectRefusal(absolute!, 403, 'host_not_allowed', 'http://allowed.test:U/')
        expect(socks).to.deep.include({reply: 0x02})
        await main.expectAudit([
          {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', rule: 'allowed.test', protocol: 'connect', resolved_ip: null},
          {host: '127.0.0.1', port: U, action: 'deny', reason: 'port_not_allowed', rule: '127.0.0.1'},
          {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', protocol: 'http'},
          {host: 'allowed.test', port: U, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
        ])
        await expectUntouched(unlistedWeb)
      })

      it('11 absolute-form HTTP to a denied or unlisted host is refused', async () => {
        const {A, D} = ports()
        const [denied, literal, unlisted] = await main.probe([
          via.get(`http://denied.test:${D}/secret`, `denied.test:${D}`),
          via.get(`http://127.0.0.1:${D}/secret`),
          via.get(`http://sneaky.test:${A}/secret`),
        ])
        expectRefusal(denied!, 403, 'denied_by_rule', 'denied.test')
        expectRefusal(literal!, 403, 'host_not_allowed', '127.0.0.1:D (its IP rule lists other ports)')
        expect(expectRefusal(unlisted!, 403, 'host_not_allowed', 'sneaky.test').body).to.equal(
          `host_not_allowed: sneaky.test:${A} is not allowed by the sandbox policy (add it to sandbox.network.allow in cleanroom.yaml)`,
        )
        await main.expectAudit([
          {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', rule: 'denied.test', protocol: 'http'},
          {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', protocol: 'http'},
          {host: 'sneaky.test', port: A, action: 'deny', reason: 'host_not_allowed', protocol: 'http'},
        ])
        await expectUntouched(deniedWeb, allowedWeb)
      })

      it('12 an allowed absolute URI with a Host header naming a denied host is refused', async () => {
        const {A, D} = ports()
        const [withPort, withoutPort] = await main.probe([
          via.get(`http://allowed.test:${A}/`, `denied.test:${D}`),
          via.get(`http://allowed.test:${A}/`, 'denied.test'),
        ])
        expectRefusal(withPort!, 400, 'host_mismatch', 'Host: denied.test:D')
        expectRefusal(withoutPort!, 400, 'host_mismatch', 'Host: denied.test')
        await main.expectAudit([
          {action: 'deny', reason: 'host_mismatch', protocol: 'http'},
          {action: 'deny', reason: 'host_mismatch', protocol: 'http'},
        ])
        await expectUntouched(allowedWeb, deniedWeb)
      })

      it('13 a request routed by its Host header only (origin-form, transparent-proxy style) is refused', async () => {
        const {A, T} = ports()
        const [originForm, https] = await main.probe([
          via.raw(getHead('/secret', `allowed.test:${A}`)),
          via.get(`https://allowed.test:${T}/`, `allowed.test:${T}`),
        ])
        expectRefusal(originForm!, 400, 'unsupported_request', 'origin-form')
        expectRefusal(https!, 400, 'unsupported_request', 'https:// absolute-form')
        await main.expectAudit([
          {action: 'deny', reason: 'unsupported_request'},
          {action: 'deny', reason: 'unsupported_request'},
        ])
        await expectUntouched(allowedWeb, gitTls)
      })

      it('14 a Host header naming a denied host inside a CONNECT tunnel does not re-route: the bytes go to the allowed target only', async () => {
        const {A, D} = ports()
        const result = await main.probeOne(via.tunnel(`allowed.test:${A}`, getHead('/in-tunnel', `denied.test:${D}`)))
        expect(result.received).to.match(/^HTTP\/1\.1 200 Connection Established\r\n\r\nHTTP\/1\.1 200 OK/)
        expect(result.received).to.include('hello from allowed: GET /in-tunnel')
        expect(allowedWeb.requests).to.deep.equal([{method: 'GET', url: '/in-tunnel', host: `denied.test:${D}`}])
        await main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', resolved_ip: '127.0.0.1'}])
        await expectUntouched(deniedWeb)
      })

      it('15 a TLS SNI naming a denied host inside a CONNECT tunnel does not re-route', async () => {
        const {T} = ports()
        const result = await main.probeOne({
          mode: 'connectTls',
          args: {authority: `allowed.test:${T}`, servername: 'denied.test', request: getHead('/sni', 'denied.test')},
        })
        expect(result.connect).to.match(/^HTTP\/1\.1 200/)
        expect(gitTls.servernames).to.deep.equal(['denied.test'])
        expect(gitTls.requests).to.deep.equal([{method: 'GET', url: '/sni', host: 'denied.test'}])
        await expectUntouched(deniedWeb)
      })

      it('16 CONNECT to each of the host\'s own interface addresses is refused, even under a broad CIDR rule', async () => {
        const {P} = ports()
        const addresses = hostAddresses()
        expect(addresses).to.include.members(['127.0.0.1', other!.hostAddress])
        const results = await main.probe(addresses.map((address) => via.connect(authority(address, P))))
        for (const [i, result] of results.entries()) expectRefusal(result, 403, 'forbidden_address', addresses[i]!)
        const ownLine = (address: string): Partial<AuditEvent> => ({host: address, port: P, action: 'deny', reason: 'forbidden_address'})
        await main.expectAudit(addresses.map((address) => ownLine(address)))
        const external = addresses.filter((address) => !isLoopback(address) && !isLinkLocal(address))
        const events = await main.auditSinceMark()
        for (const address of external) expect(events.find((event) => event.host === address)?.error, address).to.equal('local-interface')
        await expectUntouched(everyAddress)
      })

      it('17 CONNECT to 127.0.0.1, localhost, [::1] and 0.0.0.0 without an IP rule is refused', async () => {
        const {A, P} = ports()
        // A sandbox with name rules only (allowed.test and localhost on A), no IP rule at all.
        const literals = ['127.0.0.1', '::1', '0.0.0.0', '::ffff:127.0.0.1']
        const results = await nameOnly.probe([...literals.map((host) => via.connect(authority(host, A))), via.connect(`localhost:${A}`), via.socks('domain', 'localhost', A)])
        for (const [i, host] of literals.entries()) expectRefusal(results[i]!, 403, 'host_not_allowed', host)
        // A name rule never opens loopback: localhost's answers (127.0.0.1, ::1) are refused.
        expect(expectRefusal(results[4]!, 403, 'resolves_to_forbidden_address', 'localhost:A').body).to.include('localhost resolves to 127.0.0.1, a loopback address')
        expect(results[5]).to.deep.include({reply: 0x02})
        await nameOnly.expectAudit([
          ...literals.map((host) => ({host: host.replace('::ffff:', ''), port: A, action: 'deny' as const, reason: 'host_not_allowed' as const, resolved_ip: null})),
          {host: 'localhost', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1', error: 'loopback', protocol: 'connect'},
          {host: 'localhost', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'socks5'},
        ])
        // Broad CIDR rules (0.0.0.0/1, ::/1 on P) in the main sandbox do not open them either.
        const broad = await main.probe([via.connect(`0.0.0.0:${P}`), via.connect(`127.0.0.1:${P}`), via.connect(`[::1]:${P}`), via.connect(`localhost:${P}`)])
        expect(expectRefusal(broad[0]!, 403, 'forbidden_address', '0.0.0.0:P').body).to.include('the unspecified address')
        expectRefusal(broad[1]!, 403, 'forbidden_address', '127.0.0.1:P under 0.0.0.0/1')
        expectRefusal(broad[2]!, 403, 'forbidden_address', '[::1]:P under ::/1')
        expectRefusal(broad[3]!, 403, 'resolves_to_forbidden_address', 'localhost:P')
        await main.expectAudit([{host: '0.0.0.0', port: P, action: 'deny', reason: 'forbidden_address', error: 'unspecified'}])
        await expectUntouched(allowedWeb, everyAddress)
      })

      it('18 a CIDR rule written for a network does not open the host\'s own address inside it', async () => {
        const {P} = ports()
        const result = await main.probeOne(via.connect(`${other!.hostAddress}:${P}`))
        expect(expectRefusal(result, 403, 'forbidden_address', 'host end of the /30').body).to.include("one of the host's own addresses")
        await main.expectAudit([{host: other!.hostAddress, port: P, action: 'deny', reason: 'forbidden_address', error: 'local-interface', resolved_ip: other!.hostAddress}])
        await expectUntouched(everyAddress)
      })

      it('19 cloud metadata addresses are refused before any dial', async () => {
        const metadata = ['169.254.169.254', '100.100.100.200', '168.63.129.16', 'fd00:ec2::254']
        const results = await main.probe([
          ...metadata.map((address) => via.connect(authority(address, 80))),
          via.get('http://169.254.169.254/latest/meta-data/'),
          via.socks('ipv4', '169.254.169.254', 80),
        ])
        // A 403 (not a 502 "upstream_failed") means the proxy never tried to connect.
        for (const [i, result] of results.slice(0, 5).entries()) expect(expectRefusal(result, 403, 'forbidden_address', metadata[i] ?? 'GET').body).to.include('a cloud metadata address')
        expect(results[5]).to.deep.include({reply: 0x02})
        const events = await main.expectAudit([
          ...metadata.map((address) => ({host: address, port: 80, action: 'deny' as const, reason: 'forbidden_address' as const, error: 'metadata'})),
          {host: '169.254.169.254', port: 80, action: 'deny', protocol: 'http'},
          {host: '169.254.169.254', port: 80, action: 'deny', protocol: 'socks5'},
        ])
        for (const event of events) expect(event).to.deep.include({bytes_up: 0, bytes_down: 0})
      })

      it('20 DNS rebinding: an allowed name that resolves to loopback is refused', async () => {
        const {A, P} = ports()
        const [connect, absolute, socks] = await main.probe([via.connect(`rebind.test:${P}`), via.get(`http://rebind.test:${P}/`), via.socks('domain', 'rebind.test', P)])
        expect(expectRefusal(connect!, 403, 'resolves_to_forbidden_address', 'rebind.test').body).to.equal(
          `resolves_to_forbidden_address: rebind.test resolves to 127.0.0.1, a loopback address, which a sandbox may not reach (to reach it anyway, allow 127.0.0.1 on port ${P} with an IP rule in sandbox.network.allow in cleanroom.yaml)`,
        )
        expectRefusal(absolute!, 403, 'resolves_to_forbidden_address', 'http://rebind.test')
        expect(socks).to.deep.include({reply: 0x02})
        await main.expectAudit([
          {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1', protocol: 'connect'},
          {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'http'},
          {host: 'rebind.test', port: P, action: 'deny', reason: 'resolves_to_forbidden_address', protocol: 'socks5'},
        ])
        // The allowed name itself, where no IP rule opens its loopback answer.
        const [named, namedSocks] = await nameOnly.probe([via.tunnel(`allowed.test:${A}`, getHead('/', `allowed.test:${A}`)), via.socks('domain', 'allowed.test', A, getHead('/', `allowed.test:${A}`))])
        expectRefusal(named!, 403, 'resolves_to_forbidden_address', 'allowed.test without an IP rule')
        expect(namedSocks).to.deep.include({reply: 0x02})
        await nameOnly.expectAudit([{host: 'allowed.test', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1'}])
        await expectUntouched(everyAddress, allowedWeb)
      })

      it('21 decimal, octal, hex and short IPv4 spellings are refused as invalid hosts', async () => {
        const {P} = ports()
        const spellings = ['2130706433', '0177.0.0.1', '0x7f.0.0.1', '127.1', '0x7f000001', '127.000.000.001', '017700000001']
        const results = await main.probe(spellings.flatMap((host) => [via.connect(`${host}:${P}`), via.get(`http://${host}:${P}/`), via.socks('domain', host, P)]))
        for (const [i, host] of spellings.entries()) {
          expectRefusal(results[3 * i]!, 400, 'invalid_host', `CONNECT ${host}`)
          expectRefusal(results[3 * i + 1]!, 400, 'invalid_host', `GET http://${host}`)
          expect(results[3 * i + 2], `SOCKS ${host}`).to.deep.include({reply: 0x02})
        }
        await main.expectAudit(
          spellings.flatMap((host) => ['connect', 'http', 'socks5'].map((protocol) => ({host, port: P, action: 'deny' as const, reason: 'invalid_host' as const, protocol: protocol as AuditEvent['protocol']}))),
        )
        await expectUntouched(everyAddress)
      })

      it('22 trailing-dot and upper-case spellings of a denied host meet its deny rule', async () => {
        const {A, D} = ports()
        const [wildcardDenied, denied, absolute, socks] = await main.probe([
          via.connect(`BLOCKED.Allowed.TEST.:${A}`),
          via.connect(`DENIED.TEST.:${D}`),
          via.get(`http://Denied.Test.:${D}/`),
          via.socks('domain', 'BLOCKED.ALLOWED.TEST.', A),
        ])
        expect(expectRefusal(wildcardDenied!, 403, 'denied_by_rule', 'BLOCKED.Allowed.TEST.').body).to.include('deny rule for blocked.allowed.test')
        expectRefusal(denied!, 403, 'denied_by_rule', 'DENIED.TEST.')
        expectRefusal(absolute!, 403, 'denied_by_rule', 'http://Denied.Test.')
        expect(socks).to.deep.include({reply: 0x02})
        await main.expectAudit([
          {host: 'blocked.allowed.test', port: A, action: 'deny', reason: 'denied_by_rule', rule: 'blocked.allowed.test', protocol: 'connect'},
          {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'connect'},
          {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'http'},
          {host: 'blocked.allowed.test', port: A, action: 'deny', reason: 'denied_by_rule', protocol: 'socks5'},
        ])
        await expectUntouched(allowedWeb, deniedWeb)
      })

      it('23 another sandbox\'s proxy is out of reach: 127.0.0.1:3128 is always the sandbox\'s own', async () => {
        const {A} = ports()
        const peerBefore = await peer.audit()
        const [own, otherPort] = await main.probe([via.get(`http://allowed.test:${A}/from-main`), direct('127.0.0.1', 3129)])
        expect(proxyAnswer(own!).status).to.equal(200)
        expect(otherPort).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        await main.expectAudit([{sandbox_id: main.id, host: 'allowed.test', port: A, action: 'allow'}])
        expect((await main.audit()).every((event) => event.sandbox_id === main.id)).to.equal(true)
        expect(await peer.audit()).to.deep.equal(peerBefore)
        expect(peerBefore).to.deep.equal([])
        // Nor can it reach the peer's state (and audit log) on the host's filesystem.
        const peerState = join(test!.stateDir, 'sandboxes', peer.id)
        const look = await main.sh(`ls ${peerState}; cat ${join(peerState, 'egress.jsonl')}`)
        expect(look.exit_code).not.to.equal(0)
        expect(look.stdout).to.equal('')
      })

      it('24 the daemon\'s API socket is out of reach', async () => {
        const result = await main.probeOne({mode: 'unix', args: {path: test!.socketPath}})
        expect(result).to.deep.include({connected: false, error: 'ENOENT'})
      })

      it('25 the host\'s abstract unix sockets are out of reach', async () => {
        const result = await main.probeOne({mode: 'unix', args: {abstract: abstract.name}})
        expect(result).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        await expectUntouched(abstract)
      })

      it('26 raw sockets and ICMP are not available', async () => {
        const status = await main.sh("grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status")
        // Every set the kernel shows is empty (gVisor's /proc has no CapAmb line).
        const sets = status.stdout.trim().split('\n').map((line) => line.split(/\s+/))
        expect(sets.map(([name]) => name)).to.include.members(['CapEff:', 'CapPrm:', 'CapBnd:'])
        expect(sets.map(([, value]) => value)).to.satisfy((values: string[]) => values.every((value) => value === '0000000000000000'))
        if (await main.has('python3')) {
          const script = [
            'import socket',
            'for family, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, 1), (socket.AF_INET6, socket.SOCK_RAW, 58), (socket.AF_INET, socket.SOCK_DGRAM, 1), (socket.AF_PACKET, socket.SOCK_RAW, 0)]:',
            '    try:',
            '        s = socket.socket(family, kind, proto)',
            `        s.sendto(b'\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00', ('${other!.address}', 0))`,
            "        print('sent')",
            '    except OSError as e:',
            '        print(e.errno)',
          ].join('\n')
          const python = await main.sh(`python3 -c "${script}"`)
          // EPERM for raw and packet sockets. An ICMP echo socket: Linux refuses to open it (EACCES,
          // ping_group_range); gVisor opens it, and its echo has no route to go.
          const icmp = backend === 'gvisor' ? NO_ROUTE.gvisor.errno : '13'
          expect(python.stdout.trim().split('\n'), python.stderr).to.deep.equal(['1', '1', icmp, '1'])
        }
        if (await main.has('ping')) {
          const ping = await main.sh(`ping -c 1 -W 1 ${other!.address}`)
          expect(ping.exit_code).not.to.equal(0)
        }
        await expectUntouched(other!)
      })

      it('27 the sandbox cannot change its network: ip link add, ip route add and ip addr add fail', async () => {
        for (const command of ['ip link add dummy0 type dummy', 'ip route add default dev lo', `ip addr add ${other!.hostAddress}/30 dev lo`, 'ip link set lo down']) {
          const result = await main.sh(command)
          expect(result.exit_code, command).not.to.equal(0)
          // EPERM from Linux, EACCES from gVisor's netlink: refused either way.
          expect(result.stderr, command).to.match(/Operation not permitted|Permission denied/)
        }
        // Routes only through loopback (Linux keeps those in its local table, gVisor lists them here), and no link but lo.
        const routes = await main.sh('ip route; ip -6 route')
        expect(routes.stdout.trim().split('\n').filter(Boolean).filter((line) => !/ dev lo( |$)/.test(line)), routes.stdout).to.deep.equal([])
        const links = await main.sh('ip -o link')
        expect(links.stdout.trim().split('\n').map((line) => line.split(':')[1]?.trim())).to.deep.equal(['lo'])
      })

      it('28 SOCKS5 to denied destinations gets "not allowed by ruleset" (0x02)', async () => {
        const {A, D, P} = ports()
        const results = await main.probe([
          via.socks('ipv4', '127.0.0.1', D),
          via.socks('domain', 'denied.test', D),
          via.socks('domain', 'sneaky.test', A),
          via.socks('ipv4', other!.hostAddress, P),
        ])
        for (const result of results) expect(result, JSON.stringify(result)).to.deep.include({method: 0, reply: 0x02})
        await main.expectAudit([
          {host: '127.0.0.1', port: D, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
          {host: 'denied.test', port: D, action: 'deny', reason: 'denied_by_rule', protocol: 'socks5'},
          {host: 'sneaky.test', port: A, action: 'deny', reason: 'host_not_allowed', protocol: 'socks5'},
          {host: other!.hostAddress, port: P, action: 'deny', reason: 'forbidden_address', protocol: 'socks5'},
        ])
        await expectUntouched(deniedWeb, allowedWeb, everyAddress)
      })

      it('29 resolvers are not destinations through the proxy either', async () => {
        const servers = [...(await hostNameservers()), '8.8.8.8']
        const results = await main.probe([...servers.map((server) => via.connect(authority(server, DNS))), via.socks('ipv4', other!.address, DNS)])
        for (const result of results.slice(0, -1)) expectRefusal(result, 403, 'host_not_allowed', 'resolver')
        expect(results.at(-1)).to.deep.include({reply: 0x02})
        await main.expectAudit([
          // The main policy's broad rules name these addresses on other ports: the audit log says port_not_allowed.
          ...servers.map((server) => ({host: server, port: DNS, action: 'deny' as const, reason: 'port_not_allowed' as const, protocol: 'connect' as const})),
          {host: other!.address, port: DNS, action: 'deny', reason: 'port_not_allowed', protocol: 'socks5'},
        ])
        await expectUntouched(other!)
      })

      it('30 a second request pipelined behind an allowed one does not reach a denied host', async () => {
        const {A, D} = ports()
        const second = `GET http://denied.test:${D}/second HTTP/1.1\r\nHost: denied.test:${D}\r\n\r\n`
        const [forwarded, tunnelled] = await main.probe([
          via.raw(`GET http://allowed.test:${A}/first HTTP/1.1\r\nHost: allowed.test:${A}\r\n\r\n${second}`),
          via.raw(`${connectHead(`allowed.test:${A}`)}${connectHead(`denied.test:${D}`)}`),
        ])
        expect(proxyAnswer(forwarded!)).to.deep.include({status: 200, body: 'hello from allowed: GET /first'})
        expect(tunnelled!.received).to.match(/^HTTP\/1\.1 200 Connection Established\r\n\r\n/)
        // Whatever the allowed server made of the rest, it was the allowed server's to read.
        expect(allowedWeb.connections).to.have.length(2)
        await main.expectAudit([
          {host: 'allowed.test', port: A, action: 'allow', protocol: 'http'},
          {host: 'allowed.test', port: A, action: 'allow', protocol: 'connect'},
        ])
        expect((await main.auditSinceMark()).filter((event) => event.host === 'denied.test'), 'denied.test was never a destination').to.deep.equal([])
        await expectUntouched(deniedWeb)
      })
    })

    describe('allowed destinations', () => {
      it('an exact host name (absolute-form and CONNECT), resolved by the proxy', async () => {
        const {A} = ports()
        const [absolute, tunnel] = await main.probe([via.get(`http://allowed.test:${A}/exact`), via.tunnel(`allowed.test:${A}`, getHead('/tunnel', `allowed.test:${A}`))])
        expect(proxyAnswer(absolute!)).to.deep.include({status: 200, body: 'hello from allowed: GET /exact'})
        expect(tunnel!.received).to.include('hello from allowed: GET /tunnel')
        if (await main.has('curl')) {
          const curl = await main.sh(`curl -sS -m 5 http://allowed.test:${A}/curl`)
          expect(curl.stdout, curl.stderr).to.equal('hello from allowed: GET /curl')
        }
        expect(allowedWeb.requests.map((request) => request.url)).to.include.members(['/exact', '/tunnel'])
        const [line] = await main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', rule: 'allowed.test', resolved_ip: '127.0.0.1', protocol: 'http'}])
        expect(line!.bytes_up).to.be.above(0)
        expect(line!.bytes_down).to.be.above(0)
      })

      it('a wildcard host', async () => {
        const {A} = ports()
        const result = await main.probeOne(via.tunnel(`api.allowed.test:${A}`, getHead('/wildcard', `api.allowed.test:${A}`)))
        expect(result.received).to.include('hello from allowed: GET /wildcard')
        await main.expectAudit([{host: 'api.allowed.test', port: A, action: 'allow', reason: 'allowed_by_wildcard', rule: '*.allowed.test'}])
      })

      it('a CIDR rule (the other host by address)', async () => {
        const result = await main.probeOne(via.tunnel(`${other!.address}:${OTHER_HTTP}`, getHead('/cidr', other!.address)))
        expect(result.received).to.include('hello from the other host: GET /cidr')
        expect(other!.since(otherMark).filter((event) => event.kind === 'request')).to.deep.equal([{kind: 'request', port: OTHER_HTTP, method: 'GET', url: '/cidr', host: other!.address}])
        await main.expectAudit([{host: other!.address, port: OTHER_HTTP, action: 'allow', reason: 'allowed_by_cidr', rule: other!.cidr}])
      })

      it('the other host by name', async () => {
        const result = await main.probeOne(via.get(`http://other.test:${OTHER_HTTP}/named`))
        expect(proxyAnswer(result)).to.deep.include({status: 200, body: 'hello from the other host: GET /named'})
        await main.expectAudit([{host: 'other.test', port: OTHER_HTTP, action: 'allow', reason: 'allowed_by_rule', resolved_ip: other!.address}])
      })

      it('SOCKS5 with remote DNS (the proxy resolves the name)', async () => {
        const {A} = ports()
        const result = await main.probeOne(via.socks('domain', 'allowed.test', A, getHead('/socks', `allowed.test:${A}`)))
        expect(result).to.deep.include({method: 0, reply: 0})
        expect(result.received).to.include('hello from allowed: GET /socks')
        if (await main.has('curl')) {
          // ALL_PROXY is socks5h://: curl hands the name to the proxy.
          const curl = await main.sh(`curl -sS -m 5 --proxy "$ALL_PROXY" http://allowed.test:${A}/curl-socks`)
          expect(curl.stdout, curl.stderr).to.equal('hello from allowed: GET /curl-socks')
        }
        await main.expectAudit([{host: 'allowed.test', port: A, action: 'allow', reason: 'allowed_by_rule', protocol: 'socks5', resolved_ip: '127.0.0.1'}])
      })

      it('git over HTTPS through the proxy (http.proxy)', async () => {
        const {T} = ports()
        const clone = await main.sh(`git clone -q https://allowed.test:${T}/repo.git /tmp/clone && cat /tmp/clone/README && git -C /tmp/clone log --format=%s`, {GIT_SSL_CAINFO: '/workspace/ca.pem'})
        expect(clone.stdout, clone.stderr).to.equal('cloned through the egress proxy\nfirst\n')
        expect(gitTls.servernames).to.include('allowed.test')
        expect(gitTls.requests.map((request) => request.url)).to.include('/repo.git/info/refs?service=git-upload-pack')
        await main.expectAudit([{host: 'allowed.test', port: T, action: 'allow', reason: 'allowed_by_rule', protocol: 'connect'}])
      })
    })

    describe('--dangerously-allow-all', () => {
      it('allows an unlisted named host, and audits it as allowed_all', async () => {
        const [named, literal] = await open.probe([via.get(`http://unlisted.test:${OTHER_HTTP}/all`), via.tunnel(`${other!.address}:${OTHER_HTTP}`, getHead('/all-ip', other!.address))])
        expect(proxyAnswer(named!)).to.deep.include({status: 200, body: 'hello from the other host: GET /all'})
        expect(literal!.received).to.include('hello from the other host: GET /all-ip')
        await open.expectAudit([
          {host: 'unlisted.test', port: OTHER_HTTP, action: 'allow', reason: 'allowed_all', resolved_ip: other!.address},
          {host: other!.address, port: OTHER_HTTP, action: 'allow', reason: 'allowed_all'},
        ])
      })

      it('31 still refuses loopback, the host\'s own addresses and metadata', async () => {
        const {A, P} = ports()
        const own = hostAddresses()
        const results = await open.probe([
          via.connect(`127.0.0.1:${A}`),
          via.connect(`sneaky.test:${A}`),
          via.connect(`[::ffff:127.0.0.1]:${A}`),
          via.connect(`0.0.0.0:${P}`),
          via.socks('domain', 'localhost', A),
          via.connect('169.254.169.254:80'),
          via.connect('[fd00:ec2::254]:80'),
          ...own.map((address) => via.connect(authority(address, P))),
        ])
        expectRefusal(results[0]!, 403, 'forbidden_address', '127.0.0.1:A')
        expectRefusal(results[1]!, 403, 'resolves_to_forbidden_address', 'sneaky.test → 127.0.0.1')
        expectRefusal(results[2]!, 403, 'forbidden_address', '[::ffff:127.0.0.1]:A')
        expectRefusal(results[3]!, 403, 'forbidden_address', '0.0.0.0:P')
        expect(results[4]).to.deep.include({reply: 0x02})
        expectRefusal(results[5]!, 403, 'forbidden_address', 'metadata')
        expectRefusal(results[6]!, 403, 'forbidden_address', 'metadata v6')
        for (const [i, address] of own.entries()) expectRefusal(results[7 + i]!, 403, 'forbidden_address', address)
        const denied = await open.expectAudit([
          {host: '127.0.0.1', port: A, action: 'deny', reason: 'forbidden_address', error: 'loopback'},
          {host: 'sneaky.test', port: A, action: 'deny', reason: 'resolves_to_forbidden_address', resolved_ip: '127.0.0.1'},
          {host: '169.254.169.254', port: 80, action: 'deny', reason: 'forbidden_address', error: 'metadata'},
          {host: 'fd00:ec2::254', port: 80, action: 'deny', reason: 'forbidden_address', error: 'metadata'},
          ...own.map((address) => ({host: address, port: P, action: 'deny' as const, reason: 'forbidden_address' as const})),
        ])
        expect(denied.every((event) => event.bytes_up === 0)).to.equal(true)
        await expectUntouched(allowedWeb, everyAddress)
      })

      it('32 still applies deny rules, by name and by the address a name resolves to', async () => {
        const [byName, byAddress, literal] = await open.probe([
          via.connect(`evil.test:${OTHER_HTTP}`),
          via.connect(`other.test:${DNS}`),
          via.connect(`${other!.address}:${DNS}`),
        ])
        expectRefusal(byName!, 403, 'denied_by_rule', 'evil.test')
        expect(expectRefusal(byAddress!, 403, 'denied_by_rule', 'other.test:53').body).to.include(`(it resolves to ${other!.address})`)
        expectRefusal(literal!, 403, 'denied_by_rule', 'the other host:53')
        await open.expectAudit([
          {host: 'evil.test', port: OTHER_HTTP, action: 'deny', reason: 'denied_by_rule'},
          {host: 'other.test', port: DNS, action: 'deny', reason: 'denied_by_rule', resolved_ip: other!.address, rule: other!.cidr},
        ])
        await expectUntouched(other!)
      })

      it('33 never gives a direct route', async () => {
        const {A} = ports()
        const [remote, loopback, datagram] = await open.probe([
          direct(other!.address, OTHER_HTTP),
          direct('127.0.0.1', A),
          {mode: 'udp', args: {host: other!.address, port: DNS}},
        ])
        expect(remote).to.deep.include({connected: false, error: NO_ROUTE[backend].code})
        expect(loopback).to.deep.include({connected: false, error: 'ECONNREFUSED'})
        expect(datagram).to.deep.include({sent: NO_ROUTE[backend].code})
        const getent = await open.sh('getent hosts unlisted.test')
        expect(getent.exit_code).to.equal(2)
        await expectUntouched(other!, allowedWeb)
      })
    })

    describe('fail closed', () => {
      it('34 while the daemon is down the proxy port refuses connections; a new daemon re-adopts the sandbox and egress works again', async () => {
        const {A} = ports()
        const log = '/tmp/watch.log'
        const stop = '/tmp/watch.stop'
        const watch = JSON.stringify({authority: `allowed.test:${A}`, log, stop, intervalMs: 25})
        await main.sh(`node ${PROBE} watch '${watch}' </dev/null >/tmp/watch.out 2>&1 &`)
        const states = async () => (await main.sh(`cat ${log} 2>/dev/null`)).stdout.trim().split('\n').filter(Boolean)
        await until(async () => (await states()).includes('ok'), 5000, 'the watcher to get through the proxy')

        await test!.daemon.close()
        const auditWhenDown = await readFile(join(test!.stateDir, 'sandboxes', main.id, 'egress.jsonl'), 'utf8')
        const reachedWhenDown = allowedWeb.connections.length
        // The watcher keeps trying while no daemon runs (every 25 ms).
        await sleep(700)
        expect(allowedWeb.connections.length, 'connections that reached the allowed host while the daemon was down').to.equal(reachedWhenDown)

        test = await startTestDaemon(join(dir, 'daemon'), resolver)
        expect((await client().inspectSandbox(main.id)).status).to.equal('ready')
        await until(async () => (await states()).filter((state) => state === 'ok').length >= 2, 5000, 'the watcher to get through again')
        await main.sh(`touch ${stop}`)
        const seen = await states()
        expect(seen[0]).to.equal('ok')
        expect(seen.at(-1)).to.equal('ok')
        expect(seen).to.include('ECONNREFUSED')
        // Nothing but a refusal (and a connection the closing daemon cut, reset or ended unanswered: `answer ` with no status line) in between.
        expect(seen.filter((state) => !['ok', 'ECONNREFUSED', 'ECONNRESET', 'answer '].includes(state))).to.deep.equal([])
        // The audit log goes on where it stopped, and nothing was logged while no proxy listened.
        const after = (await main.audit()).map((event) => JSON.stringify(event))
        const before = auditWhenDown.trim().split('\n')
        expect(after.slice(0, before.length)).to.deep.equal(before)
        expect(after.length).to.be.above(before.length)
        // The re-adopted proxies enforce the same policies: main still refuses, the allow-all sandbox still allows.
        const {D} = ports()
        expectRefusal(await main.probeOne(via.connect(`denied.test:${D}`)), 403, 'denied_by_rule', 'main after re-adoption')
        expect(proxyAnswer(await open.probeOne(via.get(`http://unlisted.test:${OTHER_HTTP}/again`))).status, 'allow-all after re-adoption').to.equal(200)
        await expectUntouched(deniedWeb)
      })
    })
  })

  describe(`npm registry (network) (${backend})`, function () {
    this.timeout(SUITE_BUDGET_MS)
    const dirs = tempDirs('cleanroom-conf-npm-')
    let dir = ''
    let sandboxesBefore = new Set<number>()
    let test: TestDaemon | undefined

    before(async () => {
      await requireBackend(backend)
      sandboxesBefore = await sandboxPids()
      dir = await dirs.make()
      // The system resolver: the real registry, through the proxy like any allowed host.
      test = await startTestDaemon(dir)
    })

    after(async () => {
      try {
        await test?.daemon.close({shutdownSandboxes: true})
        expect(await leftoverSandboxes(sandboxesBefore, dir), 'bwrap processes of this suite still running').to.deep.equal([])
      } finally {
        await dirs.cleanup()
      }
    })

    it('npm view reaches registry.npmjs.org through the proxy, allowed by name only', async () => {
      const created = await test!.client.createSandbox({backend, policy: policyOf([{host: 'registry.npmjs.org', ports: [443]}]), workspace_source: null})
      const sandbox = new SandboxUnderTest(() => test!.client, created.sandbox_id)
      const view = await sandbox.sh('npm view is-number version', {npm_config_update_notifier: 'false', npm_config_fetch_retries: '0'})
      expect(view.stdout.trim(), view.stderr).to.match(/^\d+\.\d+\.\d+$/)
      expect(view.exit_code).to.equal(0)
      const [line] = await sandbox.expectAudit([{host: 'registry.npmjs.org', port: 443, action: 'allow', reason: 'allowed_by_rule', protocol: 'connect'}])
      expect(line!.bytes_down).to.be.above(0)
      // Nothing else was allowed: the only way out was the one rule.
      expect((await sandbox.audit()).filter((event) => event.action === 'allow' && event.host !== 'registry.npmjs.org')).to.deep.equal([])
    })
  })
}
