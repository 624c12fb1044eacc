import {createReadStream} from 'node:fs'
import {lstat, readdir, readlink} from 'node:fs/promises'
import {join} from 'node:path'
import {Readable} from 'node:stream'
import {type Header, pack} from 'tar-stream'

/**
 * A tar of `hostPath` (file, directory or symlink, not followed) whose top entry
 * is named `name`: modes and mtimes kept, owners left to the extracting side.
 */
export function packPath(hostPath: string, name: string): Readable {
  const archive = pack()
  void (async () => {
    try {
      await addPath(archive, hostPath, name)
      archive.finalize()
    } catch (error) {
      archive.destroy(error as Error)
    }
  })()
  return Readable.from(archive)
}

async function addPath(archive: ReturnType<typeof pack>, hostPath: string, name: string): Promise<void> {
  const stats = await lstat(hostPath)
  const base = {name, mode: stats.mode, mtime: stats.mtime}
  if (stats.isSymbolicLink()) {
    await entry(archive, {...base, type: 'symlink', linkname: await readlink(hostPath)})
  } else if (stats.isDirectory()) {
    await entry(archive, {...base, name: `${name}/`, type: 'directory'})
    for (const child of (await readdir(hostPath)).sort()) await addPath(archive, join(hostPath, child), `${name}/${child}`)
  } else if (stats.isFile()) {
    await new Promise<void>((resolvePromise, reject) => {
      const sink = archive.entry({...base, type: 'file', size: stats.size}, (error) => (error ? reject(error) : resolvePromise()))
      createReadStream(hostPath).on('error', reject).pipe(sink)
    })
  }
  // Sockets, fifos and devices are not copied.
}

function entry(archive: ReturnType<typeof pack>, header: Partial<Header> & Pick<Header, 'name'>): Promise<void> {
  return new Promise((resolvePromise, reject) => archive.entry(header, (error) => (error ? reject(error) : resolvePromise())))
}
