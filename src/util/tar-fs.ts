import {constants, createReadStream} from 'node:fs'
import {lstat, mkdir, open, readdir, readlink, symlink, chmod, utimes} from 'node:fs/promises'
import {dirname, isAbsolute, join, posix, relative, resolve} from 'node:path'
import {Readable} from 'node:stream'
import {pipeline} from 'node:stream/promises'
import {extract, type Header, pack} from 'tar-stream'

import {CleanroomError} from '../errors/index.js'

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

/**
 * Unpacks an untrusted tar (it comes out of a sandbox) under `root`, renaming
 * its top entry `from` to `to`. Nothing is written outside `root`: names with
 * `..` or absolute names are refused, nothing is written through a symlink, and
 * links, devices and fifos are not created except symlinks that stay inside `root`.
 */
export async function extractUnder(root: string, archive: Readable, rename: {from: string; to: string}): Promise<number> {
  const top = resolve(root)
  await mkdir(top, {recursive: true})
  let written = 0
  const unpack = extract()
  archive.on('error', (error: Error) => unpack.destroy(error))
  archive.pipe(unpack as unknown as NodeJS.WritableStream)
  try {
    for await (const entry of unpack) {
      const {header} = entry
      const name = renameTop(safeName(header.name), rename)
      const target = join(top, name)
      await refuseSymlinkParents(top, dirname(target))
      if (header.type === 'file') {
        const mode = (header.mode ?? 0o644) & 0o7777
        const file = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, mode)
        await pipeline(entry, file.createWriteStream())
        await chmod(target, mode)
        if (header.mtime) await utimes(target, header.mtime, header.mtime)
        written++
        continue
      }
      if (header.type === 'directory') {
        await mkdir(target, {recursive: true})
        await chmod(target, (header.mode ?? 0o755) & 0o7777)
      } else if (header.type === 'symlink') {
        const linkname = header.linkname ?? ''
        if (isAbsolute(linkname) || relative(top, resolve(dirname(target), linkname)).startsWith('..')) {
          throw new CleanroomError('path_escapes_root', `refusing symlink ${name} -> ${linkname}: it points outside ${top}`)
        }
        await symlink(linkname, target)
      }
      // Hard links, devices and fifos are not created.
      entry.resume()
    }
  } catch (error) {
    archive.destroy()
    throw error
  }
  return written
}

function safeName(name: string): string {
  const normalized = posix.normalize(name).replace(/\/+$/, '')
  if (name.includes('\0') || posix.isAbsolute(name) || normalized === '..' || normalized.startsWith('../')) {
    throw new CleanroomError('path_escapes_root', `refusing archive entry ${JSON.stringify(name)}: it leaves the destination`)
  }
  return normalized
}

function renameTop(name: string, {from, to}: {from: string; to: string}): string {
  if (name === from) return to
  if (name.startsWith(`${from}/`)) return `${to}${name.slice(from.length)}`
  throw new CleanroomError('path_escapes_root', `refusing archive entry ${JSON.stringify(name)}: not under ${from}`)
}

/** Every directory from `top` down to `dir` must be a real directory, never a symlink. */
async function refuseSymlinkParents(top: string, dir: string): Promise<void> {
  const parts = relative(top, dir).split('/').filter(Boolean)
  let current = top
  for (const part of parts) {
    current = join(current, part)
    const stats = await lstat(current).catch(() => undefined)
    if (stats === undefined) {
      await mkdir(current)
    } else if (!stats.isDirectory()) {
      throw new CleanroomError('path_escapes_root', `refusing to write through ${current}: not a directory`)
    }
  }
}
