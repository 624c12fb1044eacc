import {expect} from 'chai'
import {existsSync} from 'node:fs'
import {lstat, readdir, readFile, readlink, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import type {ImageEvent} from '../../src/images/build.js'
import {parseImageReference} from '../../src/images/reference.js'
import {type ImageUser, ImageService} from '../../src/images/service.js'
import {ImageStore} from '../../src/images/store.js'
import {tempDirs} from '../helpers/tmp.js'
import {busyboxLayer, ociImage, pushImage, pushIndex, tarOf} from './images.js'
import {blobDataPath, type FrontProxy, startFrontProxy, startRegistry, type TestRegistry} from './registry.js'

const HOST_ARCH = process.arch === 'arm64' ? 'arm64' : 'amd64'
const OTHER_ARCH = HOST_ARCH === 'arm64' ? 'amd64' : 'arm64'

async function failure(promise: Promise<unknown>): Promise<CleanroomError> {
  const error = await promise.then(() => undefined, (error_: unknown) => error_)
  expect(error, 'expected a failure').to.be.instanceOf(CleanroomError)
  return error as CleanroomError
}

describe('image pull from a real registry on loopback', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-images-')
  let dir: string
  let registry: TestRegistry
  let front: FrontProxy
  let users: ImageUser[] = []
  let service: ImageService
  let store: ImageStore
  const events: ImageEvent[] = []
  let appDigest: string

  before(async () => {
    dir = await dirs.make()
    registry = await startRegistry(join(dir, 'registry'))
    front = await startFrontProxy(registry)
    const base = await busyboxLayer()
    const extras = await tarOf([
      {name: 'data/', type: 'directory'},
      {name: 'data/keep.txt', content: 'keep\n'},
      {name: 'data/gone.txt', content: 'gone\n'},
      {name: 'opaque/', type: 'directory'},
      {name: 'opaque/lower.txt', content: 'lower\n'},
      {name: 'opaque/sub/deeper.txt', content: 'deeper\n'},
      {name: 'usr/bin/', type: 'directory'},
      {name: 'sbin', type: 'symlink', linkname: '/usr/bin'},
      {name: 'ro/', type: 'directory', mode: 0o555},
      {name: 'ro/file', content: 'read-only dir\n'},
    ])
    const changes = await tarOf([
      {name: 'data/.wh.gone.txt'},
      {name: 'opaque/upper.txt', content: 'upper\n'},
      {name: 'opaque/.wh..wh..opq'},
      {name: 'data/hard.txt', type: 'link', linkname: 'data/keep.txt'},
      {name: 'links/abs', type: 'symlink', linkname: '/etc/os-release'},
      {name: 'links/rel', type: 'symlink', linkname: '../data/keep.txt'},
      {name: 'sbin/tool', content: 'through a symlink\n', mode: 0o755},
      {name: 'bin/su', content: 'setuid\n', mode: 0o4755},
      {name: 'dev/null', type: 'character-device'},
      {name: 'fifo', type: 'fifo'},
    ])
    const app = ociImage([{tar: base, compression: 'gzip'}, {tar: extras, compression: 'none'}, {tar: changes, compression: 'zstd'}], {config: {Env: ['PATH=/bin:/usr/bin', 'APP=1'], WorkingDir: '/data', User: '1000:1000', Entrypoint: ['/bin/sh', '-c'], Cmd: ['ls']}})
    appDigest = await pushImage(registry, 'test/app', 'v1', app)
  })

  beforeEach(async () => {
    users = []
    events.length = 0
    store = new ImageStore(join(await dirs.make(), 'images'))
    service = new ImageService(store, () => users)
  })

  after(async () => {
    await front?.close()
    await registry?.stop()
    await dirs.cleanup()
  })

  const pull = (ref: string, access = {}) => service.pull(parseImageReference(ref), {access, onEvent: (event) => events.push(event)})

  it('pulls by tag: three layers (gzip, plain, zstd) applied in order, with whiteouts, opaque dirs, links and the run settings', async () => {
    const result = await pull(`${front.host}/test/app:v1`)
    expect(result.status).to.equal('pulled')
    const {image} = result
    expect(image.refs).to.deep.equal([`${front.host}/test/app:v1`, `${front.host}/test/app@${appDigest}`].sort())
    expect(image.digests).to.deep.equal([appDigest])
    expect(image.config).to.deep.equal({Env: ['PATH=/bin:/usr/bin', 'APP=1'], WorkingDir: '/data', User: '1000:1000', Entrypoint: ['/bin/sh', '-c'], Cmd: ['ls']})
    const root = image.rootfs
    expect(await readFile(join(root, 'data/keep.txt'), 'utf8')).to.equal('keep\n')
    expect(existsSync(join(root, 'data/gone.txt')), 'whiteout').to.equal(false)
    expect((await readdir(join(root, 'opaque'))).sort(), 'opaque dir keeps only its own layer').to.deep.equal(['upper.txt'])
    expect((await stat(join(root, 'data/hard.txt'))).ino).to.equal((await stat(join(root, 'data/keep.txt'))).ino)
    expect((await stat(join(root, 'bin/cat'))).ino).to.equal((await stat(join(root, 'bin/busybox'))).ino)
    expect(await readlink(join(root, 'links/abs'))).to.equal('/etc/os-release')
    expect(await readlink(join(root, 'bin/ls'))).to.equal('/bin/busybox')
    expect(await readlink(join(root, 'sbin'))).to.equal('/usr/bin')
    expect(await readFile(join(root, 'usr/bin/tool'), 'utf8'), 'written through sbin -> /usr/bin, inside the root').to.equal('through a symlink\n')
    expect((await stat(join(root, 'bin/su'))).mode & 0o7777, 'set-uid dropped').to.equal(0o755)
    expect((await stat(join(root, 'tmp'))).mode & 0o7777, 'sticky bit kept').to.equal(0o1777)
    expect((await stat(join(root, 'ro'))).mode & 0o777).to.equal(0o555)
    expect(existsSync(join(root, 'dev/null')) || existsSync(join(root, 'fifo')), 'no device nodes or fifos').to.equal(false)
    expect((await stat(join(root, 'bin/busybox'))).mode & 0o777).to.equal(0o755)
    expect(await service.runtime(`${front.host}/test/app@${appDigest}`), 'what the backend will start sandboxes with').to.deep.equal({id: image.id, rootfs: root, config: image.config})
    const layerEvents = events.filter((event) => event.type === 'layer' && event.status === 'done')
    expect(layerEvents).to.have.length(3)
    expect(await service.list()).to.have.length(1)
    expect(await readdir(join(store.root, 'tmp'))).to.deep.equal([])
  })

  it('downloads nothing for a digest it has, and only the manifest for a tag it has', async () => {
    await pull(`${front.host}/test/app:v1`)
    const before = front.requests.length
    const again = await pull(`${front.host}/test/app@${appDigest}`)
    expect(again.status).to.equal('cached')
    expect(front.requests.length, 'no request at all for a cached digest').to.equal(before)
    const byTag = await pull(`${front.host}/test/app:v1`)
    expect(byTag.status).to.equal('cached')
    const made = front.requests.slice(before)
    expect(made.map((request) => request.path)).to.deep.equal([`/v2/test/app/manifests/v1`])
  })

  it("picks this host's platform from a multi-platform index and fetches nothing of the other", async () => {
    const base = await busyboxLayer()
    const host = ociImage([{tar: base}], {architecture: HOST_ARCH, config: {Env: [`ARCH=${HOST_ARCH}`]}})
    const other = ociImage([{tar: await tarOf([{name: 'arch.txt', content: OTHER_ARCH}])}], {architecture: OTHER_ARCH, ...(OTHER_ARCH === 'arm64' && {variant: 'v8'})})
    const indexDigest = await pushIndex(registry, 'test/multi', 'latest', [
      {image: other, platform: {os: 'linux', architecture: OTHER_ARCH}},
      {image: host, platform: {os: 'linux', architecture: HOST_ARCH}},
    ])
    const before = front.requests.length
    const result = await pull(`${front.host}/test/multi`)
    expect(result.image.config.Env).to.deep.equal([`ARCH=${HOST_ARCH}`])
    expect(result.image.digests).to.deep.equal([indexDigest, host.manifestDigest].sort())
    expect(result.image.manifest_digest).to.equal(host.manifestDigest)
    expect(result.image.platform).to.equal(`linux/${HOST_ARCH}`)
    const paths = front.requests.slice(before).map((request) => request.path)
    expect(paths.some((path) => path.includes(other.manifestDigest) || path.includes(other.layers[0]!.digest))).to.equal(false)

    const chosen = await service.pull(parseImageReference(`${front.host}/test/multi:latest`), {platform: {os: 'linux', architecture: OTHER_ARCH}})
    expect(await readFile(join(chosen.image.rootfs, 'arch.txt'), 'utf8')).to.equal(OTHER_ARCH)
  })

  it('refuses a layer the registry serves corrupted, keeping nothing of it', async () => {
    const image = ociImage([{tar: await tarOf([{name: 'file.txt', content: 'the real content\n'.repeat(100)}]), compression: 'none'}])
    await pushImage(registry, 'test/corrupt', 'v1', image)
    const data = blobDataPath(registry, image.layers[0]!.digest)
    const bytes = await readFile(data)
    bytes.write('THE FAKE', 600)
    await writeFile(data, bytes)
    const error = await failure(pull(`${front.host}/test/corrupt:v1`))
    expect(error.code).to.equal('image_invalid')
    expect(error.message).to.match(/does not match its digest/)
    expect(await service.list()).to.deep.equal([])
    expect(existsSync(store.blobPath(image.layers[0]!.digest))).to.equal(false)
    expect(await readdir(join(store.root, 'tmp'))).to.deep.equal([])
    expect(await readdir(join(store.root, 'images'))).to.deep.equal([])
  })

  describe('hostile layers', () => {
    const hostile: [string, Parameters<typeof tarOf>[0]][] = [
      ['a "../" name', [{name: 'ok.txt', content: 'ok'}, {name: '../escaped.txt', content: 'out'}]],
      ['a name hidden behind "a/../.."', [{name: 'a/../../escaped.txt', content: 'out'}]],
      ['an absolute name', [{name: '/escaped.txt', content: 'out'}]],
      ['a hard link to a path outside', [{name: 'passwd', type: 'link', linkname: '../../../../etc/passwd'}]],
      ['a whiteout of ".."', [{name: 'dir/.wh...'}]],
    ]
    for (const [what, entries] of hostile) {
      it(`refuses an image with ${what}, writing nothing outside and caching nothing`, async () => {
        const image = ociImage([{tar: await tarOf(entries)}])
        const repo = `test/hostile-${hostile.findIndex(([name]) => name === what)}`
        await pushImage(registry, repo, 'v1', image)
        const error = await failure(pull(`${front.host}/${repo}:v1`))
        expect(error.code).to.equal('path_escapes_root')
        expect(await service.list()).to.deep.equal([])
        expect(await readdir(join(store.root, 'tmp'))).to.deep.equal([])
        expect(existsSync(join(store.root, 'escaped.txt')) || existsSync(join(store.root, 'tmp', 'escaped.txt')) || existsSync('/escaped.txt')).to.equal(false)
      })
    }

    it('resolves a write through a symlink pointing out of the root inside the root', async () => {
      const marker = `cleanroom-test-${process.pid}-${Date.now()}`
      const image = ociImage([
        {tar: await tarOf([{name: 'evil', type: 'symlink', linkname: '/'}, {name: 'up', type: 'symlink', linkname: '../../../../../../../../tmp'}])},
        {tar: await tarOf([{name: `evil/${marker}`, content: 'inside'}, {name: `up/${marker}`, content: 'inside too'}])},
      ])
      await pushImage(registry, 'test/through', 'v1', image)
      const {image: pulled} = await pull(`${front.host}/test/through:v1`)
      expect(existsSync(join('/', marker)), 'nothing written at the host root').to.equal(false)
      expect(existsSync(join('/tmp', marker)), 'nothing written in the host /tmp').to.equal(false)
      expect(await readFile(join(pulled.rootfs, marker), 'utf8')).to.equal('inside')
      expect(await readFile(join(pulled.rootfs, 'tmp', marker), 'utf8')).to.equal('inside too')
      expect((await lstat(join(pulled.rootfs, 'evil'))).isSymbolicLink()).to.equal(true)
    })
  })

  it('says which registry it cannot reach, and what a tag or repository it lacks is', async () => {
    const unreachable = await failure(pull('127.0.0.1:1/test/app:v1'))
    expect(unreachable.code).to.equal('registry_failed')
    expect(unreachable.message).to.match(/^cannot reach the registry at http:\/\/127\.0\.0\.1:1: /)
    const missing = await failure(pull(`${front.host}/test/app:no-such-tag`))
    expect(missing.code).to.equal('image_not_found')
    expect(missing.message).to.equal(`${front.host}/test/app: the registry has no manifest no-such-tag: MANIFEST_UNKNOWN manifest unknown`)
  })

  it('pulls from a registry that wants basic auth, with the credentials, and says what is missing without', async () => {
    const auth = await startRegistry(join(await dirs.make(), 'registry'), {name: 'robot', password: 'hunter2-secret'})
    try {
      const image = ociImage([{tar: await busyboxLayer()}])
      await pushImage(auth, 'private/app', 'v1', image)
      const refused = await failure(pull(`${auth.host}/private/app:v1`))
      expect(refused.code).to.equal('registry_auth_failed')
      expect(refused.suggestions.join('\n')).to.contain(`registries."${auth.host}"`)
      const wrong = await failure(pull(`${auth.host}/private/app:v1`, {username: 'robot', password: 'wrong'}))
      expect(wrong.code).to.equal('registry_auth_failed')
      expect(wrong.message).not.to.contain('wrong')
      const result = await pull(`${auth.host}/private/app:v1`, {username: 'robot', password: 'hunter2-secret'})
      expect(result.image.manifest_digest).to.equal(image.manifestDigest)
    } finally {
      await auth.stop()
    }
  })

  it("follows a registry's bearer challenge: an anonymous token from its realm, sent with every request", async () => {
    const bearer = await startFrontProxy(registry, {bearer: true})
    try {
      const result = await pull(`${bearer.host}/test/app:v1`)
      expect(result.image.manifest_digest).to.equal(appDigest)
      expect(bearer.tokensIssued).to.be.greaterThan(0)
      const registryCalls = bearer.requests.filter((request) => request.path.startsWith('/v2/test/app/blobs/'))
      expect(registryCalls.filter((request) => request.authorization?.startsWith('Bearer ')).length).to.equal(4)
    } finally {
      await bearer.close()
    }
  })

  it('does the work once for concurrent pulls of one image', async () => {
    const slow = await startFrontProxy(registry, {blobBytesPerSecond: 4 << 20})
    try {
      const [first, second] = await Promise.all([pull(`${slow.host}/test/app:v1`), pull(`${slow.host}/test/app@${appDigest}`)])
      expect(first.image.id).to.equal(second.image.id)
      const blobGets = slow.requests.filter((request) => request.path.includes('/blobs/')).map((request) => request.path)
      expect(blobGets.length, 'each blob fetched once').to.equal(new Set(blobGets).size)
      expect((await service.list())[0]!.refs).to.include.members([`${slow.host}/test/app:v1`, `${slow.host}/test/app@${appDigest}`])
    } finally {
      await slow.close()
    }
  })

  it('refuses to remove an image a sandbox runs on, naming it; prune keeps pinned and used images', async () => {
    const {image} = await pull(`${front.host}/test/app:v1`)
    const other = await service.pull(parseImageReference(`${front.host}/test/multi:latest`), {})
    users = [{sandbox_id: 'cr_USER1', status: 'ready', image_digest: appDigest}, {sandbox_id: 'cr_GONE', status: 'stopped', image_digest: other.image.manifest_digest}]
    const refused = await failure(service.remove(`${front.host}/test/app:v1`))
    expect(refused.code).to.equal('image_in_use')
    expect(refused.message).to.contain('cr_USER1')
    expect((await service.prune([], true)).removed.map((removed) => removed.id)).to.deep.equal([other.image.id])
    expect((await service.prune([`${front.host}/test/multi@${other.image.digests[0]}`], false)).removed).to.deep.equal([])
    const pruned = await service.prune([], false)
    expect(pruned.removed.map((removed) => removed.id)).to.deep.equal([other.image.id])
    expect(pruned.freed_bytes).to.be.greaterThan(0)
    expect(existsSync(other.image.rootfs)).to.equal(false)
    users = []
    const removed = await service.remove(image.manifest_digest)
    expect(removed.id).to.equal(image.id)
    expect(await service.list()).to.deep.equal([])
    expect(await readdir(join(store.root, 'blobs/sha256'))).to.deep.equal([])
    expect((await failure(service.remove('sha256:' + 'a'.repeat(64)))).code).to.equal('image_not_found')
  })
})
