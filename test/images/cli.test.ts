import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {randomBytes} from 'node:crypto'
import {existsSync} from 'node:fs'
import {mkdir, readdir, readFile, writeFile} from 'node:fs/promises'
import {request} from 'node:http'
import {join} from 'node:path'
import {setTimeout as sleep} from 'node:timers/promises'
import {fileURLToPath} from 'node:url'
import {gzipSync} from 'node:zlib'

import {DaemonClient} from '../../src/client/client.js'
import {socketPathOf} from '../../src/client/connect.js'
import {cliRepoSuite} from '../helpers/cli-repo.js'
import {busyboxLayer, ociImage, pushImage, tarOf} from './images.js'
import {type FrontProxy, startFrontProxy, startRegistry, type TestRegistry} from './registry.js'

const RUN = fileURLToPath(new URL('../../bin/run.js', import.meta.url))

const POLICY = `# The app's sandbox policy.
version: 1

sandbox:
  image:
    # Pinned with: cleanroom image bump-ref
    ref: "127.0.0.1:1/old/image@sha256:${'0'.repeat(64)}"   # keep this comment
  network:
    default: deny    # nothing leaves unless listed
    allow:
      - host: api.github.com
        ports: [443]
`

/** A CLI `image pull` as a child process we can kill: resolves once its stderr shows a layer downloading. */
function startPull(env: Record<string, string>, ref: string): {child: ReturnType<typeof spawn>; downloading: Promise<void>; stderr: () => string} {
  const child = spawn(process.execPath, [RUN, 'image', 'pull', ref], {env: {...process.env, ...env, NO_COLOR: '1'}, stdio: ['ignore', 'pipe', 'pipe']})
  let stderr = ''
  const downloading = new Promise<void>((resolve, reject) => {
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
      if (/: downloading /.test(stderr)) resolve()
    })
    child.once('exit', () => reject(new Error(`image pull exited before downloading: ${stderr}`)))
  })
  downloading.catch(() => undefined)
  return {child, downloading, stderr: () => stderr}
}

async function killed(child: ReturnType<typeof spawn>): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve))
  child.kill('SIGKILL')
  await exited
}

describe('cleanroom image (CLI, daemon, real registry)', function () {
  this.timeout(180_000)
  let registry: TestRegistry
  let front: FrontProxy
  let slow: FrontProxy
  let appDigest: string
  const bigContent = randomBytes(3 << 20)
  // Registered before the suite's own cleanup, so the registry stops before its directory goes.
  after(async () => {
    await slow?.close()
    await front?.close()
    await registry?.stop()
  })
  const context = cliRepoSuite('cleanroom-image-cli-', async ({home}) => {
    registry = await startRegistry(join(home, 'registry'))
    front = await startFrontProxy(registry)
    slow = await startFrontProxy(registry, {blobBytesPerSecond: 1 << 20})
    const app = ociImage([{tar: await busyboxLayer()}, {tar: await tarOf([{name: 'app/hello.txt', content: 'hello from the image\n'}])}])
    appDigest = await pushImage(registry, 'test/app', 'v1', app)
    await pushImage(registry, 'test/app', 'latest', app)
    await pushImage(registry, 'test/big', 'v1', ociImage([{tar: await busyboxLayer()}, {tar: await tarOf([{name: 'big.bin', content: bigContent}]), compression: 'none'}]))
  })

  const cacheDir = () => join(context.home, '.cache/cleanroom/images')

  it('pulls with progress on stderr and the result on stdout, lists, and removes', async () => {
    const pulled = await context.cli(['image', 'pull', `${front.host}/test/app:v1`])
    expect(pulled.exitCode, pulled.stderr).to.equal(0)
    expect(pulled.stderr).to.contain(`resolved ${front.host}/test/app:v1 to ${appDigest} (2 layers,`)
    expect(pulled.stderr).to.match(/sha256:[a-f0-9]{12}: downloading /)
    expect(pulled.stderr).to.match(/sha256:[a-f0-9]{12}: done /)
    expect(pulled.stdout).to.match(new RegExp(`^pulled ${front.host}/test/app:v1\\n`))
    expect(pulled.stdout).to.contain(`\ndigest:   ${appDigest}\n`)
    expect(pulled.stdout).to.contain(`rootfs:   ${cacheDir()}/images/`)

    const again = await context.cli(['image', 'pull', `${front.host}/test/app@${appDigest}`, '--json'])
    const result = JSON.parse(again.stdout) as {status: string; image: {rootfs: string; refs: string[]}}
    expect(result.status).to.equal('cached')
    expect(await readFile(join(result.image.rootfs, 'app/hello.txt'), 'utf8')).to.equal('hello from the image\n')

    const listed = JSON.parse((await context.cli(['image', 'ls', '--json'])).stdout) as {refs: string[]; digests: string[]}[]
    expect(listed).to.have.length(1)
    expect(listed[0]!.refs).to.deep.equal([`${front.host}/test/app:v1`, `${front.host}/test/app@${appDigest}`])
    const table = await context.cli(['image', 'list'])
    expect(table.stdout).to.match(new RegExp(`^REF +DIGEST +IMAGE ID +PLATFORM +SIZE +CREATED\\n${front.host}/test/app:v1 +${appDigest.slice(0, 19)} `))

    const removed = await context.cli(['image', 'rm', `${front.host}/test/app:v1`])
    expect(removed.exitCode, removed.stderr).to.equal(0)
    expect((await context.cli(['image', 'ls'])).stdout).to.equal('no cached images')
    const missing = await context.cli(['image', 'remove', `${front.host}/test/app:v1`])
    expect(missing.exitCode).to.equal(1)
    expect(missing.stderr).to.contain(`Error: no cached image ${front.host}/test/app:v1`)
    const invalid = await context.cli(['image', 'pull', 'Not/A Ref'])
    expect(invalid.exitCode).to.equal(2)
    expect(invalid.stderr).to.contain('Error: image reference "Not/A Ref" is invalid')
  })

  it('serves the image routes to curl-like clients: NDJSON progress, then the result line', async () => {
    const socketPath = socketPathOf(undefined, context.env)
    await new DaemonClient(socketPath).ping()
    const lines = await new Promise<string[]>((resolve, reject) => {
      const req = request({socketPath, method: 'POST', path: '/v1/images/pull'}, (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () => resolve(text.trim().split('\n')))
      })
      req.on('error', reject)
      req.end(JSON.stringify({ref: `${front.host}/test/app:v1`}))
    })
    const messages = lines.map((line) => JSON.parse(line) as {type: string; status?: string})
    expect(messages[0]!.type).to.equal('resolved')
    expect(messages.at(-1)).to.deep.include({type: 'result', status: 'pulled'})
    const bad = await new DaemonClient(socketPath).json('POST', '/v1/images/pull', {ref: 'Not A Ref'}).catch((error: unknown) => error)
    expect((bad as {code: string}).code).to.equal('image_ref_invalid')
    const hostile = await tarOf([{name: '../../escape.txt', content: 'out'}])
    const refused = await new Promise<{status: number; body: string}>((resolve, reject) => {
      const req = request({socketPath, method: 'POST', path: '/v1/images/import?ref=local/evil:1'}, (res) => {
        let text = ''
        res.on('data', (chunk: Buffer) => (text += chunk.toString()))
        res.on('end', () => resolve({status: res.statusCode ?? 0, body: text}))
      })
      req.on('error', reject)
      req.end(hostile)
    })
    expect(refused.status).to.equal(422)
    expect(JSON.parse(refused.body).error.code).to.equal('path_escapes_root')
  })

  it('resolves a tag without a daemon, and bump-ref rewrites only the ref of a commented policy', async () => {
    const noDaemon = {...context.env, XDG_RUNTIME_DIR: join(context.home, 'no-daemon')}
    const resolved = await context.cli(['image', 'resolve', `${front.host}/test/app:v1`])
    expect(resolved.stdout).to.equal(`${front.host}/test/app@${appDigest}`)
    await mkdir(join(context.home, 'no-daemon'))
    const direct = await (await import('../helpers/cli.js')).runCli(['image', 'resolve', `${front.host}/test/app:v1`, '--json'], {env: noDaemon, cwd: context.repo})
    expect(JSON.parse(direct.stdout)).to.deep.equal({ref: `${front.host}/test/app@${appDigest}`, digest: appDigest})
    expect(await readdir(join(context.home, 'no-daemon'))).to.deep.equal([])

    await writeFile(join(context.repo, 'cleanroom.yaml'), POLICY)
    const bumped = await context.cli(['image', 'bump-ref', `${front.host}/test/app:v1`])
    expect(bumped.exitCode, bumped.stderr).to.equal(0)
    const expected = POLICY.replace(`127.0.0.1:1/old/image@sha256:${'0'.repeat(64)}`, `${front.host}/test/app@${appDigest}`)
    expect(await readFile(join(context.repo, 'cleanroom.yaml'), 'utf8')).to.equal(expected)
    expect(bumped.stdout).to.contain(`sandbox.image.ref 127.0.0.1:1/old/image@sha256:${'0'.repeat(64)} -> ${front.host}/test/app@${appDigest}`)
    const defaulted = await context.cli(['image', 'set-ref'])
    expect(defaulted.exitCode, defaulted.stderr).to.equal(0)
    expect(defaulted.stdout).to.contain(`already ${front.host}/test/app@${appDigest}`)
    const validated = await context.cli(['policy', 'validate', '--json'])
    expect(JSON.parse(validated.stdout).policy.image_ref).to.equal(`${front.host}/test/app@${appDigest}`)
  })

  it('imports a tarball, and prune keeps what the repository policy pins', async () => {
    const tarball = join(context.home, 'rootfs.tar.gz')
    await writeFile(tarball, gzipSync(await tarOf([{name: 'imported.txt', content: 'imported\n'}])))
    const imported = await context.cli(['image', 'import', 'local/rootfs:1', tarball, '--json'])
    expect(imported.exitCode, imported.stderr).to.equal(0)
    expect(JSON.parse(imported.stdout).refs).to.include('docker.io/local/rootfs:1')
    await context.cli(['image', 'pull', `${front.host}/test/app:v1`])
    await writeFile(join(context.repo, 'cleanroom.yaml'), POLICY.replace(`127.0.0.1:1/old/image@sha256:${'0'.repeat(64)}`, `${front.host}/test/app@${appDigest}`))
    const dry = await context.cli(['image', 'prune', '--dry-run'])
    expect(dry.stdout).to.match(/^would remove sha256:[a-f0-9]{12} docker.io\/local\/rootfs:1$/)
    const pruned = JSON.parse((await context.cli(['image', 'prune', '--json'])).stdout) as {removed: {refs: string[]}[]}
    expect(pruned.removed.map((image) => image.refs[0])).to.deep.equal(['docker.io/local/rootfs:1'])
    const left = JSON.parse((await context.cli(['image', 'ls', '--json'])).stdout) as {digests: string[]}[]
    expect(left.map((image) => image.digests)).to.deep.equal([[appDigest]])
  })

  it('takes basic auth credentials from the runtime config and the environment, never printing them', async () => {
    const auth = await startRegistry(join(context.home, 'auth-registry'), {name: 'robot', password: 'hunter2-in-env'})
    try {
      await pushImage(auth, 'private/app', 'v1', ociImage([{tar: await tarOf([{name: 'secret.txt', content: 'private\n'}])}]))
      await mkdir(join(context.home, '.config/cleanroom'), {recursive: true})
      await writeFile(join(context.home, '.config/cleanroom/config.yaml'), `registries:\n  "${auth.host}":\n    username: robot\n    password_env: TEST_REGISTRY_PASSWORD\n`)
      const unset = await context.cli(['image', 'pull', `${auth.host}/private/app:v1`])
      expect(unset.exitCode).to.equal(1)
      expect(unset.stderr).to.contain(`registries."${auth.host}".password_env names TEST_REGISTRY_PASSWORD, which is not set in this environment`)
      const {runCli} = await import('../helpers/cli.js')
      const pulled = await runCli(['image', 'pull', `${auth.host}/private/app:v1`], {env: {...context.env, TEST_REGISTRY_PASSWORD: 'hunter2-in-env'}, cwd: context.repo})
      expect(pulled.exitCode, pulled.stderr).to.equal(0)
      expect(pulled.stdout + pulled.stderr).not.to.contain('hunter2')
      const log = await readFile(join(context.home, '.local/state/cleanroom/daemon.log'), 'utf8')
      expect(log).not.to.contain('hunter2')
    } finally {
      await writeFile(join(context.home, '.config/cleanroom/config.yaml'), '')
      await auth.stop()
    }
  })

  it('a pull whose CLI is killed mid-download leaves nothing usable; the next pull is complete', async () => {
    const ref = `${slow.host}/test/big:v1`
    const pull = startPull(context.env, ref)
    await pull.downloading
    await sleep(500)
    await killed(pull.child)
    // The daemon stops the pull when its only client is gone, and clears its work.
    for (let i = 0; i < 100 && (await readdir(join(cacheDir(), 'tmp'))).length > 0; i++) await sleep(50)
    expect(await readdir(join(cacheDir(), 'tmp'))).to.deep.equal([])
    const listed = JSON.parse((await context.cli(['image', 'ls', '--json'])).stdout) as {refs: string[]}[]
    expect(listed.flatMap((image) => image.refs).some((name) => name.includes('test/big'))).to.equal(false)
    const again = await context.cli(['image', 'pull', `${front.host}/test/big:v1`, '--json'])
    expect(again.exitCode, again.stderr).to.equal(0)
    const {image} = JSON.parse(again.stdout) as {image: {rootfs: string}}
    expect((await readFile(join(image.rootfs, 'big.bin'))).equals(bigContent)).to.equal(true)
    await context.cli(['image', 'rm', `${front.host}/test/big:v1`])
  })

  it('a daemon killed mid-pull leaves a temp dir the next daemon removes; the next pull is complete', async () => {
    const ref = `${slow.host}/test/big:v1`
    const client = new DaemonClient(socketPathOf(undefined, context.env))
    const pull = startPull(context.env, ref)
    await pull.downloading
    await sleep(500)
    const {pid} = await client.ping()
    process.kill(pid, 'SIGKILL')
    await new Promise((resolve) => pull.child.once('exit', resolve))
    expect(pull.child.exitCode).to.not.equal(0)
    const left = await readdir(join(cacheDir(), 'tmp'))
    expect(left.some((name) => name.startsWith(`${pid}-`)), 'the killed daemon left its work').to.equal(true)
    expect(existsSync(join(cacheDir(), 'index.json')) ? (await readFile(join(cacheDir(), 'index.json'), 'utf8')).includes('test/big') : false).to.equal(false)
    const again = await context.cli(['image', 'pull', ref, '--json'])
    expect(again.exitCode, again.stderr).to.equal(0)
    const {image} = JSON.parse(again.stdout) as {image: {rootfs: string}}
    expect((await readFile(join(image.rootfs, 'big.bin'))).equals(bigContent)).to.equal(true)
    expect((await readdir(join(cacheDir(), 'tmp'))).some((name) => name.startsWith(`${pid}-`)), 'removed by the next daemon').to.equal(false)
  })
})
