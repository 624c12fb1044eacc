import {CleanroomError} from '../errors/index.js'
import {SANDBOX_USER} from './layout.js'

/** One line of an /etc/passwd. */
export interface PasswdEntry {
  name: string
  uid: number
  gid: number
}

/** One line of an /etc/group. */
export interface GroupEntry {
  name: string
  gid: number
}

/** Who the workload of an image sandbox is, inside its user namespace. */
export interface ImageUser {
  uid: number
  gid: number
  /** Its name in the sandbox's /etc/passwd: the image's own, or the sandbox user's when the image has none for `uid`. */
  name: string
}

/** The highest id accepted for a workload: bwrap and the kernel take any 32-bit id but the two that mean "none". */
const MAX_ID = 2_147_483_647

export function parsePasswd(text: string): PasswdEntry[] {
  return entries(text, 7).map(([name, , uid, gid]) => ({name: name!, uid: Number(uid), gid: Number(gid)}))
}

export function parseGroup(text: string): GroupEntry[] {
  return entries(text, 3).map(([name, , gid]) => ({name: name!, gid: Number(gid)}))
}

/** The well-formed lines of a passwd or group file, as fields; a line with non-numeric ids is skipped, as libc skips it. */
function entries(text: string, minFields: number): string[][] {
  return text
    .split('\n')
    .map((line) => line.split(':'))
    .filter((fields) => fields.length >= minFields && fields[0] !== '' && !fields[0]!.startsWith('#') && isId(fields[2]) && (minFields < 7 || isId(fields[3])))
}

function isId(value: string | undefined): boolean {
  return value !== undefined && /^\d{1,10}$/.test(value) && Number(value) <= MAX_ID
}

/**
 * The workload's uid, gid and name for an image's `User` (OCI: `user`, `uid`,
 * `user:group`, `uid:gid` and the mixed forms), looked up in the image's own
 * passwd and group files as Docker does: a numeric uid needs no entry (its gid is
 * then 0 unless given), a name must have one. No `User` at all: the sandbox user
 * (uid 1000), as on the host's root filesystem — an image that wants root says so.
 */
export function resolveImageUser(spec: string | undefined, passwd: readonly PasswdEntry[], group: readonly GroupEntry[]): ImageUser {
  const named = (uid: number) => passwd.find((entry) => entry.uid === uid)?.name ?? SANDBOX_USER.name
  const text = spec?.trim() ?? ''
  if (text === '') return {uid: SANDBOX_USER.uid, gid: SANDBOX_USER.gid, name: named(SANDBOX_USER.uid)}
  const colon = text.indexOf(':')
  const userPart = colon === -1 ? text : text.slice(0, colon)
  const groupPart = colon === -1 ? undefined : text.slice(colon + 1)

  let uid: number
  let gid: number
  if (/^\d+$/.test(userPart)) {
    uid = id(userPart, spec!)
    gid = passwd.find((entry) => entry.uid === uid)?.gid ?? 0
  } else {
    const entry = passwd.find((candidate) => candidate.name === userPart)
    if (!entry) throw unknownUser(spec!, `no user ${JSON.stringify(userPart)} in the image's /etc/passwd`)
    uid = entry.uid
    gid = entry.gid
  }
  if (groupPart !== undefined) {
    if (/^\d+$/.test(groupPart)) {
      gid = id(groupPart, spec!)
    } else {
      const entry = group.find((candidate) => candidate.name === groupPart)
      if (!entry) throw unknownUser(spec!, `no group ${JSON.stringify(groupPart)} in the image's /etc/group`)
      gid = entry.gid
    }
  }
  return {uid, gid, name: named(uid)}
}

function id(text: string, spec: string): number {
  if (!isId(text)) throw unknownUser(spec, `${text} is not a user or group id (0-${MAX_ID})`)
  return Number(text)
}

function unknownUser(spec: string, why: string): CleanroomError {
  return new CleanroomError('image_invalid', `the image's User ${JSON.stringify(spec)} cannot be run: ${why}`, {
    suggestions: ['Set USER in the image to a user its /etc/passwd has, or to a numeric uid[:gid]'],
  })
}

/**
 * The sandbox's /etc/passwd and /etc/group: the image's own (every account kept, byte
 * for byte), plus an account for the workload's uid and gid when the image has none,
 * named after the sandbox user with its home. An image without the files gets root's,
 * nobody's and the workload's.
 */
export function sandboxAccounts(imagePasswd: string | undefined, imageGroup: string | undefined, user: ImageUser): {passwd: string; group: string} {
  const {home, shell} = SANDBOX_USER
  const passwdBase = imagePasswd ?? 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n'
  const groupBase = imageGroup ?? 'root:x:0:\nnogroup:x:65534:\n'
  const hasUid = parsePasswd(passwdBase).some((entry) => entry.uid === user.uid)
  const hasGid = parseGroup(groupBase).some((entry) => entry.gid === user.gid)
  return {
    passwd: withLine(passwdBase, hasUid ? undefined : `${user.name}:x:${user.uid}:${user.gid}:${user.name}:${home}:${shell}`),
    group: withLine(groupBase, hasGid ? undefined : `${user.name}:x:${user.gid}:`),
  }
}

function withLine(text: string, line: string | undefined): string {
  const ended = text === '' || text.endsWith('\n') ? text : `${text}\n`
  return line === undefined ? ended : `${ended}${line}\n`
}
