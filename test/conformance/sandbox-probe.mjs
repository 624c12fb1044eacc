// Runs INSIDE a sandbox, with the host's node: network attempts, their outcomes as one JSON line on stdout.
// Usage: node sandbox-probe.mjs <mode> '<json args>'. The conformance suite copies it into the workspace.
import dgram from 'node:dgram'
import {promises as dns} from 'node:dns'
import {existsSync, appendFileSync} from 'node:fs'
import net from 'node:net'
import tls from 'node:tls'

const PROXY = {host: '127.0.0.1', port: 3128}
const [mode = '', argText = '{}'] = process.argv.slice(2)
const args = JSON.parse(argText)

const modes = {
  /** A plain TCP connection, no proxy: {host, port, send?} → {connected, error?, received}. */
  async tcp({host, port, send, timeoutMs = 3000}) {
    return converse(net.connect({host, port}), timeoutMs, send === undefined ? [] : [{send}])
  },

  /**
   * A raw conversation with the sandbox's proxy: steps of {send}, {send, times} (the text that many times),
   * {until: text} and {waitMs}; then reads until it closes.
   */
  async proxy({steps, timeoutMs = 5000}) {
    return converse(net.connect(PROXY), timeoutMs, steps)
  },

  /** CONNECT through the proxy, then TLS with `servername` inside the tunnel, then one request. */
  async connectTls({authority, servername, request, timeoutMs = 5000}) {
    const socket = net.connect(PROXY)
    const head = await new Promise((resolve) => {
      let text = ''
      socket.once('error', (error) => resolve({error: error.code}))
      socket.on('connect', () => socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`))
      const onData = (chunk) => {
        text += chunk.toString('latin1')
        if (text.includes('\r\n\r\n')) {
          socket.off('data', onData)
          resolve({head: text})
        }
      }
      socket.on('data', onData)
      socket.once('close', () => resolve({head: text}))
    })
    if (head.error || !/^HTTP\/1\.1 200/.test(head.head ?? '')) return {connect: head.head ?? '', error: head.error}
    const secure = tls.connect({socket, servername, rejectUnauthorized: false})
    const inner = await converse(secure, timeoutMs, [{send: request}], 'secureConnect')
    return {connect: head.head, ...inner}
  },

  /** SOCKS5 CONNECT through the proxy: {type: domain|ipv4|ipv6, host, port, send?} → {method, reply, received}. */
  async socks({type, host, port, send, timeoutMs = 5000}) {
    const socket = net.connect(PROXY)
    const reader = bytesReader(socket)
    try {
      await reader.connected
      socket.write(Buffer.from([5, 1, 0]))
      const [, method] = await reader.take(2)
      const portBytes = Buffer.from([port >> 8, port & 0xff])
      let address
      if (type === 'ipv4') address = Buffer.from([1, ...host.split('.').map(Number)])
      else if (type === 'ipv6') address = Buffer.concat([Buffer.from([4]), ipv6Bytes(host)])
      else address = Buffer.concat([Buffer.from([3, Buffer.byteLength(host)]), Buffer.from(host)])
      socket.write(Buffer.concat([Buffer.from([5, 1, 0]), address, portBytes]))
      const reply = await reader.take(10)
      const code = reply.length >= 2 ? reply[1] : null
      if (code !== 0 || send === undefined) {
        socket.destroy()
        return {method, reply: code}
      }
      socket.write(send)
      const received = await reader.rest(timeoutMs)
      return {method, reply: code, received: received.toString('latin1')}
    } catch (error) {
      socket.destroy()
      return {error: error.code ?? String(error)}
    }
  },

  /** One UDP datagram: {host, port, connect?} → {sent, error?} (a connected socket also reports ICMP errors). */
  async udp({host, port, connect = false, waitMs = connect ? 200 : 50}) {
    const socket = dgram.createSocket(net.isIPv6(host) ? 'udp6' : 'udp4')
    const errors = []
    socket.on('error', (error) => errors.push(error.code))
    const payload = Buffer.from('cleanroom-udp-probe')
    const sent = await new Promise((resolve) => {
      const send = () => socket.send(payload, (error) => resolve(error ? error.code : 'sent'))
      if (connect) socket.connect(port, host, (error) => (error ? resolve(error.code) : send()))
      else socket.send(payload, port, host, (error) => resolve(error ? error.code : 'sent'))
    })
    // A second send on a connected socket reports the ICMP answer to the first, if any.
    let second
    if (connect && sent === 'sent') {
      await sleep(waitMs)
      second = await new Promise((resolve) => socket.send(payload, (error) => resolve(error ? error.code : 'sent')))
    }
    await sleep(waitMs)
    socket.close()
    return {sent, second, errors}
  },

  /** A DNS query to a chosen server (UDP, c-ares): {server, name} → {answers?, error?}. */
  async dns({server, name}) {
    const resolver = new dns.Resolver({timeout: 1000, tries: 1})
    resolver.setServers([server])
    try {
      return {answers: await resolver.resolve4(name)}
    } catch (error) {
      return {error: error.code}
    }
  },

  /** The system resolver (getaddrinfo), as any program uses it. */
  async lookup({name}) {
    try {
      return {answers: await dns.lookup(name, {all: true})}
    } catch (error) {
      return {error: error.code}
    }
  },

  /** A unix socket, by path or in the abstract namespace: {path?, abstract?} → {connected, error?}. */
  async unix({path, abstract, timeoutMs = 3000}) {
    const socket = net.connect({path: abstract === undefined ? path : `\0${abstract}`})
    return converse(socket, timeoutMs, [{send: 'cleanroom-unix-probe'}])
  },

  /** Several probes in one process, in order: {probes: [{mode, args}]} → their results. */
  async batch({probes}) {
    const results = []
    for (const {mode: each, args: eachArgs} of probes) results.push(await modes[each](eachArgs))
    return results
  },

  /**
   * Keeps trying the proxy (CONNECT `authority`) every `intervalMs` and appends each outcome to `log`
   * when it changes, until `stop` exists (or `maxMs` passed): one line "<state>\t<when the attempt began,
   * ms since the epoch>\t<how long it took, ms>", the state "ok", an error code, "timeout" (no answer in
   * 2 s) or "answer <status line>" ("answer " when it closed unanswered). Runs in the background.
   */
  async watch({authority, log, stop, intervalMs = 50, maxMs = 30000}) {
    const started = Date.now()
    let last = ''
    while (!existsSync(stop) && Date.now() - started < maxMs) {
      const began = Date.now()
      const outcome = await converse(net.connect(PROXY), 2000, [{send: `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`}, {until: '\r\n\r\n'}, {close: true}])
      const answered = /^HTTP\/1\.1 200/.test(outcome.received) ? 'ok' : outcome.timedOut ? 'timeout' : `answer ${outcome.received.split('\r\n')[0]}`
      const state = outcome.error ?? answered
      if (state !== last) appendFileSync(log, `${state}\t${began}\t${Date.now() - began}\n`)
      last = state
      await sleep(intervalMs)
    }
    return {stopped: true}
  },
}

/** Runs steps on a stream socket; resolves with what arrived once it closes (or at the timeout). */
function converse(socket, timeoutMs, steps, readyEvent = 'connect') {
  return new Promise((resolve) => {
    let received = Buffer.alloc(0)
    let connected = false
    let error
    let waiting
    const finish = (timedOut) => {
      clearTimeout(timer)
      socket.destroy()
      resolve({connected, ...(error !== undefined && {error}), ...(timedOut && {timedOut: true}), received: received.toString('latin1')})
    }
    const timer = setTimeout(() => finish(true), timeoutMs)
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk])
      waiting?.()
    })
    socket.on('error', (cause) => {
      error ??= cause.code ?? String(cause)
    })
    socket.on('close', () => {
      waiting?.()
      finish(false)
    })
    socket.once(readyEvent, async () => {
      connected = true
      for (const step of steps) {
        if (socket.destroyed) return
        if (step.send !== undefined) socket.write(Buffer.from(step.send.repeat(step.times ?? 1), 'latin1'))
        if (step.waitMs !== undefined) await sleep(step.waitMs)
        if (step.until !== undefined) {
          while (!received.toString('latin1').includes(step.until) && !socket.destroyed) await new Promise((wake) => (waiting = wake))
        }
        if (step.close) return finish(false)
      }
    })
  })
}

function bytesReader(socket) {
  let buffer = Buffer.alloc(0)
  let ended = false
  let wake
  socket.on('data', (chunk) => {
    buffer = Buffer.concat([buffer, chunk])
    wake?.()
  })
  socket.on('close', () => {
    ended = true
    wake?.()
  })
  const connected = new Promise((resolve, reject) => {
    socket.once('connect', resolve)
    socket.once('error', reject)
  })
  socket.on('error', () => undefined)
  return {
    connected,
    async take(count) {
      while (buffer.length < count && !ended) await new Promise((resolve) => (wake = resolve))
      const taken = buffer.subarray(0, count)
      buffer = buffer.subarray(taken.length)
      return taken
    },
    async rest(timeoutMs) {
      const deadline = Date.now() + timeoutMs
      while (!ended && Date.now() < deadline) await Promise.race([new Promise((resolve) => (wake = resolve)), sleep(50)])
      return buffer
    },
  }
}

function ipv6Bytes(address) {
  // A trailing dotted quad (::ffff:127.0.0.1) is two groups.
  const text = address.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_, a, b, c, d) => `${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`)
  const [head = '', tail = ''] = text.split('::')
  const groups = (part) => (part === '' ? [] : part.split(':'))
  const h = groups(head)
  const t = groups(tail)
  const all = text.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h
  return Buffer.from(all.flatMap((group) => [parseInt(group, 16) >> 8, parseInt(group, 16) & 0xff]))
}

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

const run = modes[mode]
if (run === undefined) {
  process.stderr.write(`unknown probe mode ${mode}\n`)
  process.exit(2)
}
process.stdout.write(`${JSON.stringify(await run(args))}\n`)
process.exit(0)
