import {type ChildProcess, execFile, spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {fileURLToPath} from 'node:url'
import {promisify} from 'node:util'

const run = promisify(execFile)
const TARGET_SCRIPT = fileURLToPath(new URL('netns-target.mjs', import.meta.url))

/** What the other host reported: a TCP connection, an HTTP request, or a UDP datagram. */
export interface OtherHostEvent {
  readonly kind: 'ready' | 'request' | 'tcp' | 'udp'
  readonly port?: number
  readonly remote?: string
  readonly host?: string | null
  readonly url?: string
}

/**
 * Another machine, as far as a sandbox can tell: a network namespace made for
 * the test, joined to the host by one veth pair with a /30 from 10.250.0.0/16
 * (the host side gets .1, the other host .2), and nothing routed beyond it.
 * Servers in it (netns-target.mjs) report every connection and datagram.
 */
export class OtherHost {
  readonly events: OtherHostEvent[] = []
  private child: ChildProcess | undefined

  private constructor(
    readonly namespace: string,
    private readonly hostLink: string,
    /** The /30 shared by the host and the other host. */
    readonly cidr: string,
    /** The host's end of the link: one of the host's own addresses. */
    readonly hostAddress: string,
    readonly address: string,
  ) {}

  /** Creates the namespace and starts its servers; on any failure removes what it made and throws saying what is missing. */
  static async create(ports: {tcp: number[]; udp: number[]}): Promise<OtherHost> {
    const id = randomBytes(3).toString('hex')
    const block = await unusedBlock()
    const other = new OtherHost(`cr-conf-${id}`, `crc${id}h`, `${block}.0/30`, `${block}.1`, `${block}.2`)
    try {
      await ip('netns', 'add', other.namespace)
      await ip('link', 'add', other.hostLink, 'type', 'veth', 'peer', 'name', `crc${id}p`, 'netns', other.namespace)
      await ip('addr', 'add', `${other.hostAddress}/30`, 'dev', other.hostLink)
      await ip('link', 'set', other.hostLink, 'up')
      await ip('-n', other.namespace, 'addr', 'add', `${other.address}/30`, 'dev', `crc${id}p`)
      await ip('-n', other.namespace, 'link', 'set', `crc${id}p`, 'up')
      await ip('-n', other.namespace, 'link', 'set', 'lo', 'up')
      await other.startServers(ports)
    } catch (error) {
      await other.destroy()
      throw error
    }
    return other
  }

  /** The events after `mark` (an index into `events`), without the readiness line. */
  since(mark: number): OtherHostEvent[] {
    return this.events.slice(mark).filter((event) => event.kind !== 'ready')
  }

  /** Stops the servers and removes the namespace and the link; safe to call more than once. */
  async destroy(): Promise<void> {
    const child = this.child
    this.child = undefined
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGKILL')
      await exited
    }
    await ip('netns', 'del', this.namespace).catch(() => undefined)
    // The host end goes with its peer's namespace; delete it in case the namespace lingered.
    await ip('link', 'del', this.hostLink).catch(() => undefined)
  }

  private async startServers(ports: {tcp: number[]; udp: number[]}): Promise<void> {
    const child = spawn('ip', ['netns', 'exec', this.namespace, process.execPath, TARGET_SCRIPT, JSON.stringify({address: this.address, ...ports})], {
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    this.child = child
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
    let partial = ''
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the other host's servers did not start within 10 s: ${stderr}`)), 10_000)
      child.stdout!.on('data', (chunk: Buffer) => {
        const lines = (partial + chunk.toString()).split('\n')
        partial = lines.pop() ?? ''
        for (const line of lines) {
          const event = JSON.parse(line) as OtherHostEvent
          this.events.push(event)
          if (event.kind === 'ready') {
            clearTimeout(timer)
            resolve()
          }
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`the other host's servers exited (${code}): ${stderr}`))
      })
    })
  }
}

async function ip(...args: string[]): Promise<void> {
  try {
    await run('ip', args)
  } catch (error) {
    const stderr = (error as {stderr?: string}).stderr ?? String(error)
    throw new Error(`ip ${args.join(' ')} failed (the conformance suite needs root and iproute2 to make its "other host" namespace): ${stderr.trim()}`)
  }
}

/** A 10.250.x.0/30 block with no address or route of the host in 10.250.x.0/24. */
async function unusedBlock(): Promise<string> {
  const {stdout: addresses} = await run('ip', ['-4', '-o', 'addr', 'show'])
  const {stdout: routes} = await run('ip', ['-4', 'route', 'show', 'table', 'all'])
  const used = `${addresses}\n${routes}`
  for (let attempt = 0; attempt < 50; attempt++) {
    const block = `10.250.${Math.floor(Math.random() * 256)}`
    if (!used.includes(`${block}.`)) return block
  }
  throw new Error('no unused 10.250.x.0/30 block for the test namespace')
}
