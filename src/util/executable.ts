import {constants} from 'node:fs'
import {access, readFile} from 'node:fs/promises'
import {delimiter, isAbsolute, join} from 'node:path'

/** `name` as a program: itself when it is a path, else the first executable of that name on PATH. */
export async function findExecutable(name: string, path = process.env.PATH ?? '/usr/bin:/bin'): Promise<string | undefined> {
  if (name.includes('/')) return (await isExecutable(name)) ? name : undefined
  for (const dir of path.split(delimiter)) {
    if (!isAbsolute(dir)) continue
    const candidate = join(dir, name)
    if (await isExecutable(candidate)) return candidate
  }
  return undefined
}

async function isExecutable(path: string): Promise<boolean> {
  return access(path, constants.X_OK).then(
    () => true,
    () => false,
  )
}

/** A number from /proc/sys (`user/max_user_namespaces`); undefined when the kernel has no such knob. */
export async function readSysctl(name: string): Promise<number | undefined> {
  const text = await readFile(`/proc/sys/${name}`, 'utf8').catch(() => undefined)
  if (text === undefined) return undefined
  const value = Number.parseInt(text.trim(), 10)
  return Number.isNaN(value) ? undefined : value
}
