/**
 * Image pull benchmark (also run standalone: `node --import tsx bench/images.ts`):
 * `cleanroom image pull` of a ~100 MiB image (four gzip layers of real files
 * from the host's /usr) from Debian's docker-registry on loopback, daemon
 * warm and cache cold, against `skopeo copy docker://… oci:DIR` of the same
 * image where skopeo is installed. skopeo only downloads and verifies the
 * blobs; cleanroom also decompresses and unpacks every layer.
 */
import {execFileSync, spawn} from 'node:child_process'
import {lstat, mkdtemp, readdir, rm, writeFile} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'
import {pathToFileURL} from 'node:url'

import {DaemonClient} from '../src/client/client.js'
import {ociImage, pushImage, type Compression} from '../test/images/images.js'
import {startRegistry} from '../test/images/registry.js'
import {benchEnv, command, compare, type Comparison, installed, renderComparison, type Variant} from './harness.js'

const RUN = new URL('../bin/run.js', import.meta.url).pathname
const IMAGE_BYTES = 100 << 20
const LAYERS = 4

export async function imageComparison(options: {runs: number}): Promise<Comparison> {
  const home = await mkdtemp(join(tmpdir(), 'cleanroom-bench-images-'))
  const env = benchEnv(home)
  const registry = await startRegistry(join(home, 'registry'))
  const daemon = spawn(process.execPath, [RUN, 'serve'], {env, stdio: 'ignore'})
  try {
    const client = new DaemonClient(join(home, 'run/cleanroom/cleanroom.sock'))
    await waitFor(() => client.ping())
    const layers = await layersOfHostFiles(home)
    const gzipLayers: string[] = []
    for (const compression of ['gzip', 'zstd'] as Compression[]) {
      const image = ociImage(layers.map((tar) => ({tar, compression})))
      if (compression === 'gzip') gzipLayers.push(...image.layers.map((layer) => layer.digest.slice('sha256:'.length)))
      await pushImage(registry, `bench/usr-${compression}`, 'v1', image)
    }
    const ref = (compression: Compression) => `${registry.host}/bench/usr-${compression}:v1`
    const cold = (compression: Compression) => async () => {
      await client.json('DELETE', `/v1/images/${encodeURIComponent(ref(compression))}`).catch(() => undefined)
    }
    const layout = join(home, 'oci')
    const unpacked = join(home, 'unpacked')
    const skopeo = ['skopeo', 'copy', '--quiet', '--src-tls-verify=false', `docker://${ref('gzip')}`, `oci:${layout}`]
    const variants: Variant[] = []
    if (installed('skopeo')) {
      const clean = async () => {
        await rm(layout, {recursive: true, force: true})
        await rm(unpacked, {recursive: true, force: true})
      }
      variants.push({name: 'skopeo copy docker://… oci:DIR', prepare: clean, run: command(skopeo)})
      // For scale: the same copy, then GNU tar unpacking its layers, as a shell would do it (nothing verified).
      const untar = gzipLayers.map((hex) => `tar -C ${unpacked} -xzf ${layout}/blobs/sha256/${hex}`).join(' && ')
      variants.push({name: 'skopeo copy, then tar -xzf of each layer', prepare: clean, run: command(['sh', '-c', `${skopeo.join(' ')} && mkdir ${unpacked} && ${untar}`])})
    } else {
      console.log('  (skopeo not installed: apt-get install -y skopeo to compare with it)')
    }
    variants.push(
      {name: 'cleanroom image pull (gzip layers)', prepare: cold('gzip'), run: command([process.execPath, RUN, 'image', 'pull', ref('gzip')], env)},
      {name: 'cleanroom image pull (zstd layers)', prepare: cold('zstd'), run: command([process.execPath, RUN, 'image', 'pull', ref('zstd')], env)},
    )
    return await compare('image pull: ~100 MiB, 4 layers, loopback registry, cache cold', variants, {
      runs: options.runs,
      warmup: 1,
      ...(variants.length === 4 && {goal: {variant: 'cleanroom image pull (gzip layers)', maxRatio: 1.2}}),
    })
  } finally {
    daemon.kill('SIGTERM')
    await new Promise((resolve) => daemon.once('exit', resolve))
    await registry.stop()
    await rm(home, {recursive: true, force: true})
  }
}

/** Four tars of regular files from /usr, about IMAGE_BYTES together: real binaries and text, as an image holds. */
async function layersOfHostFiles(home: string): Promise<Buffer[]> {
  const files: string[] = []
  let total = 0
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir).catch(() => [])).sort()) {
      if (total >= IMAGE_BYTES) return
      const path = join(dir, name)
      const stats = await lstat(path).catch(() => undefined)
      if (stats?.isDirectory()) await walk(path)
      else if (stats?.isFile() && stats.size < 16 << 20) {
        files.push(path.slice(1))
        total += stats.size
      }
    }
  }
  await walk('/usr/lib')
  const per = Math.ceil(files.length / LAYERS)
  const tars: Buffer[] = []
  for (let i = 0; i < LAYERS; i++) {
    const list = join(home, `layer-${i}.list`)
    await writeFile(list, files.slice(i * per, (i + 1) * per).join('\n'))
    tars.push(execFileSync('tar', ['-C', '/', '-cf', '-', '--no-recursion', '-T', list], {maxBuffer: 1 << 30}))
  }
  return tars
}

async function waitFor(probe: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 400; i++) {
    if (await probe().then(() => true, () => false)) return
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  throw new Error('the daemon did not start')
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  console.log(renderComparison(await imageComparison({runs: Number(process.env.BENCH_RUNS ?? 10)})))
}
