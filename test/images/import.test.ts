import {expect} from 'chai'
import {createReadStream} from 'node:fs'
import {mkdir, readdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {gzipSync} from 'node:zlib'

import {CleanroomError} from '../../src/errors/index.js'
import {openImportSource} from '../../src/images/client.js'
import {parseImageReference} from '../../src/images/reference.js'
import {ImageService} from '../../src/images/service.js'
import {ImageStore} from '../../src/images/store.js'
import {tempDirs} from '../helpers/tmp.js'
import {busyboxLayer, type BuiltImage, ociImage, tarOf} from './images.js'

/** Writes `image` as an OCI image layout in `dir`, tagged `tag` in index.json. */
async function writeLayout(dir: string, image: BuiltImage, tag: string): Promise<void> {
  await mkdir(join(dir, 'blobs/sha256'), {recursive: true})
  await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion": "1.0.0"}')
  const blobs = [image.manifest, image.config, ...image.layers.map((layer) => layer.blob)]
  const {createHash} = await import('node:crypto')
  for (const blob of blobs) await writeFile(join(dir, 'blobs/sha256', createHash('sha256').update(blob).digest('hex')), blob)
  const index = {
    schemaVersion: 2,
    manifests: [{mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: image.manifestDigest, size: image.manifest.length, annotations: {'org.opencontainers.image.ref.name': tag}}],
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify(index))
}

describe('image import', function () {
  this.timeout(60_000)
  const dirs = tempDirs('cleanroom-image-import-')
  let dir: string
  let service: ImageService
  let store: ImageStore

  beforeEach(async () => {
    dir = await dirs.make()
    store = new ImageStore(join(dir, 'cache'))
    service = new ImageService(store, () => [])
  })

  after(() => dirs.cleanup())

  it('makes a one-layer image of a gzipped root filesystem tarball; the same tarball twice is the same image', async () => {
    const tarball = join(dir, 'rootfs.tar.gz')
    await writeFile(tarball, gzipSync(await busyboxLayer()))
    const {format, body} = await openImportSource(tarball, Readable.from([]))
    expect(format).to.equal('rootfs')
    const image = await service.importRootfs(parseImageReference('local/rootfs:1'), body)
    expect(image.refs).to.include('docker.io/local/rootfs:1')
    expect(image.layers).to.have.length(1)
    expect(image.layers[0]!.media_type).to.equal('application/vnd.oci.image.layer.v1.tar+gzip')
    expect(await readFile(join(image.rootfs, 'etc/os-release'), 'utf8')).to.equal('NAME=cleanroom-test\n')
    expect(image.platform).to.match(/^linux\/(amd64|arm64\/v8)$/)
    const again = await service.importRootfs(parseImageReference('local/rootfs:2'), createReadStream(tarball))
    expect(again.id).to.equal(image.id)
    expect(again.refs).to.include.members(['docker.io/local/rootfs:1', 'docker.io/local/rootfs:2'])
    expect(await service.list()).to.have.length(1)
    expect((await service.get(image.manifest_digest)).id).to.equal(image.id)
  })

  it('reads a plain tarball from stdin (-) and refuses one that escapes its root', async () => {
    const plain = await tarOf([{name: 'hello.txt', content: 'hi\n'}])
    const {body} = await openImportSource('-', Readable.from([plain]))
    const image = await service.importRootfs(parseImageReference('local/plain:1'), body)
    expect(image.layers[0]!.media_type).to.equal('application/vnd.oci.image.layer.v1.tar')
    expect(await readFile(join(image.rootfs, 'hello.txt'), 'utf8')).to.equal('hi\n')
    const hostile = Readable.from([await tarOf([{name: '../../escape', content: 'x'}])])
    const error = await service.importRootfs(parseImageReference('local/evil:1'), hostile).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('path_escapes_root')
    expect(await readdir(join(store.root, 'tmp'))).to.deep.equal([])
  })

  it('imports an OCI image layout directory, verifying every blob against its name', async () => {
    const image = ociImage([{tar: await busyboxLayer(), compression: 'zstd'}, {tar: await tarOf([{name: 'app.txt', content: 'app\n'}])}], {config: {Cmd: ['/bin/sh']}})
    const layout = join(dir, 'layout')
    await writeLayout(layout, image, 'v1')
    const {format, body} = await openImportSource(layout, Readable.from([]))
    expect(format).to.equal('oci-layout')
    const imported = await service.importOciLayout(parseImageReference('local/app:v1'), body)
    expect(imported.id).to.equal(image.configDigest)
    expect(imported.manifest_digest).to.equal(image.manifestDigest)
    expect(imported.config).to.deep.equal({Cmd: ['/bin/sh']})
    expect(await readFile(join(imported.rootfs, 'app.txt'), 'utf8')).to.equal('app\n')

    const tampered = join(dir, 'tampered')
    await writeLayout(tampered, image, 'v1')
    const layer = join(tampered, 'blobs/sha256', image.layers[1]!.digest.slice('sha256:'.length))
    const bytes = await readFile(layer)
    bytes[100] = bytes[100]! ^ 0xff
    await writeFile(layer, bytes)
    await service.remove(imported.id)
    const error = await service.importOciLayout(parseImageReference('local/app:v1'), (await openImportSource(tampered, Readable.from([]))).body).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('image_invalid')
    expect((error as CleanroomError).message).to.contain('does not match its digest')
    expect(await service.list()).to.deep.equal([])
  })

  it('refuses a directory that is not an OCI layout, and a digest as the name', async () => {
    const empty = join(dir, 'not-a-layout')
    await mkdir(empty)
    const error = await service.importOciLayout(parseImageReference('local/x:1'), (await openImportSource(empty, Readable.from([]))).body).catch((error_: unknown) => error_)
    expect((error as CleanroomError).code).to.equal('image_invalid')
    expect((error as CleanroomError).message).to.contain('not an OCI image layout')
    const pinned = await service.importRootfs(parseImageReference(`local/x@sha256:${'a'.repeat(64)}`), Readable.from([])).catch((error_: unknown) => error_)
    expect((pinned as CleanroomError).code).to.equal('image_ref_invalid')
  })
})
