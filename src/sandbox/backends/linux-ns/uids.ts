import {randomInt} from 'node:crypto'
import {chmod, chown, lstat, readdir} from 'node:fs/promises'
import {basename, dirname, join} from 'node:path'

/**
 * Host uids reserved for sandboxes of a root daemon, one per sandbox, used as uid and
 * gid. Not real accounts; distinct per sandbox so an escaped sandbox cannot read another's state.
 */
export const HOST_UID_RANGE = {first: 200_000, last: 265_535} as const

let claims: Promise<unknown> = Promise.resolve()

/**
 * Picks a host uid no sibling state dir holds and makes `stateDir` `root:U 0710`, so only
 * U may traverse it. The group of each sandbox's state dir is the registry: a uid is free
 * again once its state dir is gone. Claims within this process are serialised, so parallel
 * provisions cannot pick the same uid.
 */
export function claimHostUid(stateDir: string): Promise<number> {
  const claim = claims.then(() => claimNow(stateDir))
  claims = claim.catch(() => undefined)
  return claim
}

async function claimNow(stateDir: string): Promise<number> {
  const used = await uidsInUse(dirname(stateDir), basename(stateDir))
  const size = HOST_UID_RANGE.last - HOST_UID_RANGE.first + 1
  // A random start keeps a just-released uid from coming straight back.
  const start = randomInt(size)
  for (let step = 0; step < size; step++) {
    const uid = HOST_UID_RANGE.first + ((start + step) % size)
    if (used.has(uid)) continue
    await chown(stateDir, 0, uid)
    await chmod(stateDir, 0o710)
    return uid
  }
  throw new Error(`every host uid from ${HOST_UID_RANGE.first} to ${HOST_UID_RANGE.last} is taken by a sandbox in ${dirname(stateDir)}`)
}

async function uidsInUse(sandboxesDir: string, self: string): Promise<Set<number>> {
  const names = (await readdir(sandboxesDir)).filter((name) => name !== self)
  const gids = await Promise.all(names.map((name) => lstat(join(sandboxesDir, name)).then((stats) => stats.gid, () => undefined)))
  return new Set(gids.filter((gid): gid is number => gid !== undefined && gid >= HOST_UID_RANGE.first && gid <= HOST_UID_RANGE.last))
}
