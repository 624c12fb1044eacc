import {expect} from 'chai'
import {join} from 'node:path'

import {direct, hostNameservers, proxyAnswer, via} from '../sandbox.js'
import {DNS, dnsOverTcpQuery, hostAddresses, isLinkLocal, isLoopback, NO_ROUTE, OTHER_HTTP, unroutable} from './shared.js'
import type {EgressSuite} from './suite.js'

/**
 * Bypass attempts that go around the proxy: sockets of the sandbox's own, UDP, DNS, the host's
 * unix sockets and the sandbox's network configuration.
 */

/** Direct TCP, UDP and DNS from inside the sandbox, ignoring the proxy settings (01-07). */
export function rawSockets(suite: EgressSuite): void {
  it('01 direct TCP to the host\'s 127.0.0.1, ignoring the proxy settings (--noproxy), is refused', async () => {
    const {A, D, P} = suite.ports()
    const results = await suite.main.probe([direct('127.0.0.1', A), direct('127.0.0.1', D), direct('::1', P), direct('localhost', A)])
    for (const result of results) expect(result, JSON.stringify(result)).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    if (await suite.main.has('curl')) {
      const curl = await suite.main.sh(`curl -sS --noproxy '*' -m 5 http://127.0.0.1:${A}/`)
      expect(curl.exit_code, curl.stderr).to.equal(7)
    }
    await suite.expectUntouched(suite.allowedWeb, suite.deniedWeb, suite.everyAddress)
  })

  it('02 direct TCP to another host\'s address, or the host\'s own, has no route', async () => {
    const {P} = suite.ports()
    const outside = [...new Set([suite.other.address, ...hostAddresses().filter((address) => !isLoopback(address)), '8.8.8.8'])]
    const results = await suite.main.probe([direct(suite.other.address, OTHER_HTTP), ...outside.map((address) => direct(address, P))])
    const targetsTried = [suite.other.address, ...outside]
    for (const [i, result] of results.entries()) {
      expect(result, targetsTried[i]).to.deep.include({connected: false, error: unroutable(suite.backend, targetsTried[i]!)})
    }
    if (await suite.main.has('curl')) {
      const curl = await suite.main.sh(`curl -sS --noproxy '*' -m 5 http://${suite.other.address}:${OTHER_HTTP}/`)
      expect(curl.exit_code, curl.stderr).to.equal(7)
    }
    await suite.expectUntouched(suite.everyAddress, suite.other)
  })

  it('03 with every proxy variable unset, raw sockets reach nothing', async () => {
    const {A} = suite.ports()
    const [name, loopback, remote] = await suite.main.probe([{mode: 'lookup', args: {name: 'allowed.test'}}, direct('127.0.0.1', A), direct(suite.other.address, OTHER_HTTP)], {clearEnv: true})
    expect(name!.error).to.be.oneOf(['ENOTFOUND', 'EAI_AGAIN'])
    expect(loopback).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    expect(remote).to.deep.include({connected: false, error: NO_ROUTE[suite.backend].code})
    if (await suite.main.has('python3')) {
      const script = `import socket\ns = socket.socket()\ntry:\n    s.connect(('${suite.other.address}', ${OTHER_HTTP}))\n    print('connected')\nexcept OSError as e:\n    print(e.errno)`
      const python = await suite.main.sh(`env -i python3 -c "${script}"`)
      expect(python.stdout.trim(), python.stderr).to.equal(NO_ROUTE[suite.backend].errno)
    }
    await suite.expectUntouched(suite.allowedWeb, suite.other)
  })

  it('04 UDP datagrams to any address go nowhere', async () => {
    const outside = [...new Set([suite.other.address, ...hostAddresses().filter((address) => !isLinkLocal(address) && !isLoopback(address))])]
    const results = await suite.main.probe([
      {mode: 'udp', args: {host: '127.0.0.1', port: suite.udp.port, connect: true}},
      {mode: 'udp', args: {host: '::1', port: suite.udp.port, connect: true}},
      {mode: 'udp', args: {host: suite.other.address, port: DNS}},
      ...outside.map((host) => ({mode: 'udp' as const, args: {host, port: suite.udp.port}})),
    ])
    const [loopback4, loopback6, ...away] = results
    // Loopback is the sandbox's own: the datagram is sent, to nobody there (port unreachable), and the host hears nothing.
    for (const loopback of [loopback4, loopback6]) {
      expect(loopback, JSON.stringify(loopback)).to.deep.include({sent: 'sent'})
      expect(loopback!.errors, JSON.stringify(loopback)).to.include('ECONNREFUSED')
    }
    for (const result of away) expect(result.sent, JSON.stringify(result)).to.equal(NO_ROUTE[suite.backend].code)
    await suite.expectUntouched(suite.udp, suite.other)
  })

  it('05 DNS queries over UDP reach no resolver (the host\'s, a public one, the other host\'s)', async () => {
    const servers = [...(await hostNameservers()), '8.8.8.8', suite.other.address]
    const results = await suite.main.probe([
      ...servers.map((server) => ({mode: 'dns' as const, args: {server, name: 'allowed.test'}})),
      ...servers.map((host) => ({mode: 'udp' as const, args: {host, port: DNS}})),
      {mode: 'dns', args: {server: '127.0.0.1', name: 'allowed.test'}},
    ])
    for (const result of results.slice(0, servers.length)) expect(result, JSON.stringify(result)).to.have.property('error').that.is.a('string')
    for (const [i, result] of results.slice(servers.length, 2 * servers.length).entries()) {
      // A resolver on loopback (systemd-resolved's 127.0.0.53) would be the sandbox's own loopback: nobody there.
      expect(result.sent, servers[i]).to.equal(isLoopback(servers[i]!) ? 'sent' : unroutable(suite.backend, servers[i]!))
    }
    expect(results.at(-1), 'a resolver on the sandbox\'s loopback').to.have.property('error').that.is.a('string')
    await suite.expectUntouched(suite.other)
  })

  it('06 DNS over TCP port 53 reaches no resolver', async () => {
    const query = dnsOverTcpQuery('allowed.test')
    const servers = [...(await hostNameservers()), '8.8.8.8', suite.other.address]
    const results = await suite.main.probe([...servers.map((server) => direct(server, DNS, query)), direct('127.0.0.1', DNS, query)])
    for (const [i, result] of results.slice(0, -1).entries()) {
      expect(result, servers[i]).to.deep.include({connected: false, error: isLoopback(servers[i]!) ? 'ECONNREFUSED' : unroutable(suite.backend, servers[i]!)})
    }
    expect(results.at(-1)).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    await suite.expectUntouched(suite.other)
  })

  it('07 no name resolves inside: getent hosts fails, resolv.conf names no server', async () => {
    for (const name of ['allowed.test', 'other.test', 'registry.npmjs.org', 'example.com']) {
      const getent = await suite.main.sh(`getent hosts ${name}`)
      expect({name, exit: getent.exit_code, out: getent.stdout}).to.deep.equal({name, exit: 2, out: ''})
    }
    const resolv = await suite.main.sh('cat /etc/resolv.conf')
    expect(resolv.stdout).not.to.match(/^\s*nameserver/m)
    await suite.expectUntouched(suite.other)
  })
}

/** What of the host a sandbox can name without the network: other proxies, the daemon's socket, abstract sockets, raw sockets, its own links (23-27). */
export function hostReach(suite: EgressSuite): void {
  it('23 another sandbox\'s proxy is out of reach: 127.0.0.1:3128 is always the sandbox\'s own', async () => {
    const {A} = suite.ports()
    const peerBefore = await suite.peer.audit()
    const [own, otherPort] = await suite.main.probe([via.get(`http://allowed.test:${A}/from-main`), direct('127.0.0.1', 3129)])
    expect(proxyAnswer(own!).status).to.equal(200)
    expect(otherPort).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    await suite.main.expectAudit([{sandbox_id: suite.main.id, host: 'allowed.test', port: A, action: 'allow'}])
    expect((await suite.main.audit()).every((event) => event.sandbox_id === suite.main.id)).to.equal(true)
    expect(await suite.peer.audit()).to.deep.equal(peerBefore)
    expect(peerBefore).to.deep.equal([])
    // Nor can it reach the peer's state (and audit log) on the host's filesystem.
    const peerState = join(suite.test.stateDir, 'sandboxes', suite.peer.id)
    const look = await suite.main.sh(`ls ${peerState}; cat ${join(peerState, 'egress.jsonl')}`)
    expect(look.exit_code).not.to.equal(0)
    expect(look.stdout).to.equal('')
  })

  it('24 the daemon\'s API socket is out of reach', async () => {
    const result = await suite.main.probeOne({mode: 'unix', args: {path: suite.test.socketPath}})
    expect(result).to.deep.include({connected: false, error: 'ENOENT'})
  })

  it('25 the host\'s abstract unix sockets are out of reach', async () => {
    const result = await suite.main.probeOne({mode: 'unix', args: {abstract: suite.abstract.name}})
    expect(result).to.deep.include({connected: false, error: 'ECONNREFUSED'})
    await suite.expectUntouched(suite.abstract)
  })

  it('26 raw sockets and ICMP are not available', async () => {
    const status = await suite.main.sh("grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status")
    // Every set the kernel shows is empty (gVisor's /proc has no CapAmb line).
    const sets = status.stdout.trim().split('\n').map((line) => line.split(/\s+/))
    expect(sets.map(([name]) => name)).to.include.members(['CapEff:', 'CapPrm:', 'CapBnd:'])
    expect(sets.map(([, value]) => value)).to.satisfy((values: string[]) => values.every((value) => value === '0000000000000000'))
    if (await suite.main.has('python3')) {
      const script = [
        'import socket',
        'for family, kind, proto in [(socket.AF_INET, socket.SOCK_RAW, 1), (socket.AF_INET6, socket.SOCK_RAW, 58), (socket.AF_INET, socket.SOCK_DGRAM, 1), (socket.AF_PACKET, socket.SOCK_RAW, 0)]:',
        '    try:',
        '        s = socket.socket(family, kind, proto)',
        `        s.sendto(b'\\x08\\x00\\xf7\\xff\\x00\\x00\\x00\\x00', ('${suite.other.address}', 0))`,
        "        print('sent')",
        '    except OSError as e:',
        '        print(e.errno)',
      ].join('\n')
      const python = await suite.main.sh(`python3 -c "${script}"`)
      // EPERM for raw and packet sockets. An ICMP echo socket: Linux refuses to open it (EACCES,
      // ping_group_range); gVisor opens it, and its echo has no route to go.
      const icmp = suite.backend === 'gvisor' ? NO_ROUTE.gvisor.errno : '13'
      expect(python.stdout.trim().split('\n'), python.stderr).to.deep.equal(['1', '1', icmp, '1'])
    }
    if (await suite.main.has('ping')) {
      const ping = await suite.main.sh(`ping -c 1 -W 1 ${suite.other.address}`)
      expect(ping.exit_code).not.to.equal(0)
    }
    await suite.expectUntouched(suite.other)
  })

  it('27 the sandbox cannot change its network: ip link add, ip route add and ip addr add fail', async () => {
    for (const command of ['ip link add dummy0 type dummy', 'ip route add default dev lo', `ip addr add ${suite.other.hostAddress}/30 dev lo`, 'ip link set lo down']) {
      const result = await suite.main.sh(command)
      expect(result.exit_code, command).not.to.equal(0)
      // EPERM from Linux, EACCES from gVisor's netlink: refused either way.
      expect(result.stderr, command).to.match(/Operation not permitted|Permission denied/)
    }
    // Routes only through loopback (Linux keeps those in its local table, gVisor lists them here), and no link but lo.
    const routes = await suite.main.sh('ip route; ip -6 route')
    expect(routes.stdout.trim().split('\n').filter(Boolean).filter((line) => !/ dev lo( |$)/.test(line)), routes.stdout).to.deep.equal([])
    const links = await suite.main.sh('ip -o link')
    expect(links.stdout.trim().split('\n').map((line) => line.split(':')[1]?.trim())).to.deep.equal(['lo'])
  })
}
