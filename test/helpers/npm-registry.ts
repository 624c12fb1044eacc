import {createHash} from 'node:crypto'
import {createServer, type Server} from 'node:http'
import type {AddressInfo} from 'node:net'
import {gzipSync} from 'node:zlib'
import {pack} from 'tar-stream'
import {buffer} from 'node:stream/consumers'

const INSTALL_SCRIPT = 'ln -f lib/program.sh bin/fake-agent.sh'

/** A release of the fake agent package: its bin prints its version and arguments. */
interface Release {
  version: string
  tarball: Buffer
}

/** Loopback, but not 127.0.0.1: npm goes around the proxy for NO_PROXY's 127.0.0.1 whatever its own noproxy says. */
export const REGISTRY_HOST = '127.0.0.2'

/**
 * A small npm registry on 127.0.0.2 serving one package, `fake-agent`, whose bin
 * `fake-agent` is a shell script. Tests publish releases, move `latest`, and count
 * what npm asked for. npm in a sandbox reaches it through the sandbox's egress
 * proxy when the agent's network allows 127.0.0.2:<port> (an IP rule opens loopback).
 */
export class FakeNpmRegistry {
  readonly requests: string[] = []
  private readonly releases = new Map<string, Release>()
  private latest = ''

  private constructor(
    private readonly server: Server,
    readonly port: number,
  ) {}

  static async start(): Promise<FakeNpmRegistry> {
    let registry: FakeNpmRegistry | undefined
    const server = createServer((req, res) => registry!.answer(req.url ?? '/', res))
    await new Promise<void>((resolve) => server.listen(0, REGISTRY_HOST, resolve))
    registry = new FakeNpmRegistry(server, (server.address() as AddressInfo).port)
    return registry
  }

  get url(): string {
    return `http://${REGISTRY_HOST}:${this.port}/`
  }

  /** The agent's env that points npm at this registry. */
  get npmEnv(): Record<string, string> {
    return {npm_config_registry: this.url}
  }

  /** The agent's network need that lets its sandboxes reach this registry. */
  get networkNeed(): {host: string; ports: number[]} {
    return {host: REGISTRY_HOST, ports: [this.port]}
  }

  async publish(version: string): Promise<void> {
    const archive = pack()
    // As opencode-ai does: the bin is a placeholder that the install script replaces with a hard link to the real program.
    const packageJson = JSON.stringify({name: 'fake-agent', version, bin: {'fake-agent': 'bin/fake-agent.sh'}, scripts: {postinstall: INSTALL_SCRIPT}})
    archive.entry({name: 'package/package.json', mode: 0o644}, packageJson)
    archive.entry({name: 'package/bin/fake-agent.sh', mode: 0o755}, '#!/bin/sh\necho "the install script did not run" >&2\nexit 3\n')
    archive.entry({name: 'package/lib/program.sh', mode: 0o755}, `#!/bin/sh\necho "fake-agent ${version}:" "$@"\n`)
    archive.finalize()
    this.releases.set(version, {version, tarball: gzipSync(await buffer(archive))})
    this.latest = version
  }

  /** How many times npm fetched a release's tarball. */
  tarballFetches(): number {
    return this.requests.filter((path) => path.endsWith('.tgz')).length
  }

  /** How many times npm asked about the package (its packument). */
  packumentFetches(): number {
    return this.requests.filter((path) => path === '/fake-agent').length
  }

  close(): Promise<void> {
    this.server.closeAllConnections()
    return new Promise((resolve) => this.server.close(() => resolve()))
  }

  private answer(path: string, res: import('node:http').ServerResponse): void {
    this.requests.push(path)
    const tarball = /^\/fake-agent\/-\/fake-agent-(.+)\.tgz$/.exec(path)
    if (tarball) {
      const release = this.releases.get(tarball[1]!)
      if (!release) return void res.writeHead(404).end()
      res.writeHead(200, {'content-type': 'application/octet-stream', 'content-length': release.tarball.length}).end(release.tarball)
      return
    }
    if (path !== '/fake-agent') return void res.writeHead(404, {'content-type': 'application/json'}).end('{"error":"not found"}')
    const versions = Object.fromEntries(
      [...this.releases.values()].map((release) => [
        release.version,
        {
          name: 'fake-agent',
          version: release.version,
          bin: {'fake-agent': 'bin/fake-agent.sh'},
          scripts: {postinstall: INSTALL_SCRIPT},
          hasInstallScript: true,
          dist: {
            tarball: `${this.url}fake-agent/-/fake-agent-${release.version}.tgz`,
            integrity: `sha512-${createHash('sha512').update(release.tarball).digest('base64')}`,
            shasum: createHash('sha1').update(release.tarball).digest('hex'),
          },
        },
      ]),
    )
    res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({name: 'fake-agent', 'dist-tags': {latest: this.latest}, versions}))
  }
}
