import {type ChildProcess, execFileSync, spawn} from 'node:child_process'
import {createHash, randomBytes} from 'node:crypto'
import {mkdir, writeFile} from 'node:fs/promises'
import {createServer as createHttpServer, request, type Server} from 'node:http'
import {createServer as createNetServer} from 'node:net'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'

/** Debian's docker-registry (the reference registry v2) on 127.0.0.1, storage and config in `dir`. */
export interface TestRegistry {
  /** `127.0.0.1:<port>` */
  host: string
  storage: string
  /** The Authorization header to push with (basic auth when the registry has users). */
  authorization?: string
  stop(): Promise<void>
}

export async function freePort(): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const {port} = server.address() as {port: number}
  await new Promise((resolve) => server.close(resolve))
  return port
}

/**
 * Starts the registry; with `user`, it requires that user's password (basic
 * auth, an htpasswd file made with apache2-utils' htpasswd -B: the registry
 * takes only bcrypt). Fails with the reason when docker-registry is missing.
 */
export async function startRegistry(dir: string, user?: {name: string; password: string}): Promise<TestRegistry> {
  const storage = join(dir, 'storage')
  await mkdir(storage, {recursive: true})
  const port = await freePort()
  const lines = ['version: 0.1', 'log:', '  level: error', '  accesslog:', '    disabled: true', 'storage:', '  filesystem:', `    rootdirectory: ${storage}`, '  delete:', '    enabled: true', 'http:', `  addr: 127.0.0.1:${port}`]
  if (user) {
    const htpasswd = join(dir, 'htpasswd')
    try {
      await writeFile(htpasswd, execFileSync('htpasswd', ['-Bbn', user.name, user.password]))
    } catch (error) {
      throw new Error(`htpasswd (Debian package apache2-utils) is needed to make a bcrypt htpasswd file: ${(error as Error).message}`)
    }
    lines.push('auth:', '  htpasswd:', '    realm: cleanroom-test', `    path: ${htpasswd}`)
  }
  const config = join(dir, 'config.yml')
  await writeFile(config, `${lines.join('\n')}\n`)
  const child = spawn('docker-registry', ['serve', config], {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const spawned = new Promise<void>((resolve, reject) => {
    child.once('spawn', resolve)
    child.once('error', (error) => reject(new Error(`docker-registry (Debian package docker-registry) cannot start: ${error.message}`)))
  })
  await spawned
  const host = `127.0.0.1:${port}`
  const registry: TestRegistry = {
    host,
    storage,
    ...(user && {authorization: `Basic ${Buffer.from(`${user.name}:${user.password}`).toString('base64')}`}),
    stop: () => stopChild(child),
  }
  for (let i = 0; i < 200; i++) {
    const status = await httpStatus(`http://${host}/v2/`).catch(() => 0)
    if (status === 200 || status === 401) return registry
    if (child.exitCode !== null) break
    await sleep(25)
  }
  await registry.stop()
  throw new Error(`docker-registry did not start on ${host}: ${stderr}`)
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000)
  await exited
  clearTimeout(timer)
}

function httpStatus(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, (res) => {
      res.resume()
      resolve(res.statusCode ?? 0)
    })
    req.on('error', reject)
    req.end()
  })
}

export function sha256(bytes: Buffer): string {
  return `sha256:${createHash('sha256').update(bytes).digest('hex')}`
}

/** One HTTP call to the registry (pushes), with its basic auth; rejects on an unexpected status. */
export function call(registry: TestRegistry, method: string, url: string, body?: Buffer, headers: Record<string, string> = {}): Promise<{status: number; headers: Record<string, string | string[] | undefined>; body: Buffer}> {
  return new Promise((resolve, reject) => {
    const target = url.startsWith('http') ? url : `http://${registry.host}${url}`
    const req = request(target, {method, headers: {...(registry.authorization && {authorization: registry.authorization}), ...(body && {'content-length': String(body.length)}), ...headers}}, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks)}))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** Uploads a blob with the registry API (monolithic upload: POST, then PUT with the digest). */
export async function pushBlob(registry: TestRegistry, repository: string, blob: Buffer): Promise<string> {
  const digest = sha256(blob)
  const started = await call(registry, 'POST', `/v2/${repository}/blobs/uploads/`)
  if (started.status !== 202) throw new Error(`upload start answered ${started.status}: ${started.body.toString()}`)
  const location = new URL(String(started.headers.location), `http://${registry.host}`)
  location.searchParams.set('digest', digest)
  const done = await call(registry, 'PUT', location.href, blob, {'content-type': 'application/octet-stream'})
  if (done.status !== 201) throw new Error(`upload of ${digest} answered ${done.status}: ${done.body.toString()}`)
  return digest
}

export async function pushManifest(registry: TestRegistry, repository: string, tag: string, manifest: Buffer, mediaType: string): Promise<string> {
  const answer = await call(registry, 'PUT', `/v2/${repository}/manifests/${tag}`, manifest, {'content-type': mediaType})
  if (answer.status !== 201) throw new Error(`manifest push answered ${answer.status}: ${answer.body.toString()}`)
  return sha256(manifest)
}

/** Where the registry keeps a blob's bytes (for corrupting them). */
export function blobDataPath(registry: TestRegistry, digest: string): string {
  const hex = digest.slice('sha256:'.length)
  return join(registry.storage, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data')
}

export interface FrontOptions {
  /** Require a bearer token from a token endpoint on this same server (the ghcr.io / Docker Hub flow). */
  bearer?: boolean
  /** Slow blob bodies down to about this many bytes per second. */
  blobBytesPerSecond?: number
}

/** A server in front of the registry: records every request, optionally requires bearer tokens or slows blobs down. */
export interface FrontProxy {
  host: string
  requests: {method: string; path: string; authorization?: string}[]
  tokensIssued: number
  close(): Promise<void>
}

export async function startFrontProxy(registry: TestRegistry, options: FrontOptions = {}): Promise<FrontProxy> {
  const token = randomBytes(16).toString('hex')
  let port = 0
  const front: FrontProxy = {host: '', requests: [], tokensIssued: 0, close: async () => undefined}
  const server: Server = createHttpServer((req, res) => {
    const path = req.url ?? '/'
    front.requests.push({method: req.method ?? 'GET', path, ...(req.headers.authorization && {authorization: req.headers.authorization})})
    if (options.bearer && path.startsWith('/token')) {
      const query = new URL(path, 'http://x').searchParams
      if (query.get('service') !== 'cleanroom-test' || !/^repository:[\w/.-]+:pull$/.test(query.get('scope') ?? '')) {
        res.writeHead(400).end()
        return
      }
      front.tokensIssued++
      res.writeHead(200, {'content-type': 'application/json'}).end(JSON.stringify({token}))
      return
    }
    if (options.bearer && req.headers.authorization !== `Bearer ${token}`) {
      const scope = /^\/v2\/(.+)\/(?:manifests|blobs)\//.exec(path)?.[1]
      res.writeHead(401, {'www-authenticate': `Bearer realm="http://127.0.0.1:${port}/token",service="cleanroom-test"${scope ? `,scope="repository:${scope}:pull"` : ''}`, 'content-type': 'application/json'})
      res.end('{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}')
      return
    }
    const headers = {...req.headers, host: registry.host, ...(registry.authorization ? {authorization: registry.authorization} : {})}
    if (options.bearer) delete headers.authorization
    const upstream = request(`http://${registry.host}${path}`, {method: req.method, headers}, async (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers)
      const slow = options.blobBytesPerSecond !== undefined && path.includes('/blobs/')
      for await (const chunk of answer) {
        if (res.destroyed) break
        const buffer = chunk as Buffer
        for (let offset = 0; offset < buffer.length; offset += 16 * 1024) {
          const piece = buffer.subarray(offset, offset + 16 * 1024)
          res.write(piece)
          if (slow) await sleep((piece.length / options.blobBytesPerSecond!) * 1000)
        }
      }
      res.end()
    })
    upstream.on('error', () => res.destroy())
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as {port: number}).port
  front.host = `127.0.0.1:${port}`
  front.close = () =>
    new Promise((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
  return front
}
