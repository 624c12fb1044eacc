import {execFileSync} from 'node:child_process'
import {readFileSync, realpathSync} from 'node:fs'
import {dirname} from 'node:path'
import {Readable} from 'node:stream'

import type {DaemonClient} from '../../src/client/client.js'
import {importThroughDaemon} from '../../src/images/client.js'
import {type LayerEntry, tarOf} from './images.js'

/** The busybox applets the image sandbox tests call by name outside a shell (a shell finds every applet itself). */
const APPLETS = ['sh', 'env', 'cat', 'ls', 'id', 'grep', 'unshare', 'true', 'mkdir', 'stat', 'tar']

/**
 * A root filesystem of busybox-static and the host's node with the libraries it
 * links (as ldd lists them): enough for the probe scripts of the conformance
 * suites, and nothing else of the host (no git, npm, python, curl).
 */
export async function nodeRootfsTar(): Promise<Buffer> {
  const node = realpathSync(process.execPath)
  const libraries = execFileSync('ldd', [node], {encoding: 'utf8'})
    .split('\n')
    .map((line) => /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line)?.[1])
    .filter((path): path is string => path !== undefined)
  const entries: LayerEntry[] = []
  const dirs = new Set<string>()
  const addDirs = (path: string) => {
    const parent = dirname(path)
    if (parent === '/' || dirs.has(parent)) return
    addDirs(parent)
    dirs.add(parent)
    entries.push({name: `${parent.slice(1)}/`, type: 'directory'})
  }
  const addFile = (path: string, content: Buffer) => {
    addDirs(path)
    entries.push({name: path.slice(1), content, mode: 0o755})
  }
  addFile('/bin/busybox', readFileSync('/bin/busybox'))
  for (const applet of APPLETS) entries.push({name: `bin/${applet}`, type: 'symlink', linkname: 'busybox'})
  addFile('/usr/bin/node', readFileSync(node))
  for (const library of libraries) addFile(library, readFileSync(realpathSync(library)))
  entries.push({name: 'etc/', type: 'directory'}, {name: 'etc/os-release', content: 'NAME=cleanroom-node-test\n'}, {name: 'tmp/', type: 'directory', mode: 0o1777})
  return tarOf(entries)
}

/** Imports the node root filesystem into the daemon's cache; answers the digest-pinned reference a policy names. */
export async function importNodeImage(client: DaemonClient): Promise<string> {
  const image = await importThroughDaemon(client, 'local/cleanroom-node-test:1', 'rootfs', Readable.from([await nodeRootfsTar()]))
  return `docker.io/local/cleanroom-node-test@${image.manifest_digest}`
}
