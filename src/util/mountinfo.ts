/** One line of /proc/PID/mountinfo (proc(5)), its paths unescaped. */
export interface MountEntry {
  /** `major:minor` of the filesystem. */
  device: string
  /** The path within the filesystem that is mounted: a bind mount's source, as the filesystem names it. */
  root: string
  mountPoint: string
  fsType: string
  superOptions: string
}

/** The mounts of mountinfo text; lines it cannot read are skipped. */
export function parseMountinfo(text: string): MountEntry[] {
  const mounts: MountEntry[] = []
  for (const line of text.split('\n')) {
    const [before, after] = line.split(' - ')
    if (before === undefined || after === undefined) continue
    const [, , device, root, mountPoint] = before.split(' ')
    const [fsType, , superOptions = ''] = after.split(' ')
    if (device === undefined || root === undefined || mountPoint === undefined || fsType === undefined) continue
    mounts.push({device, root: unescapeMountPath(root), mountPoint: unescapeMountPath(mountPoint), fsType, superOptions})
  }
  return mounts
}

/** The kernel writes space, tab, newline and backslash in mountinfo paths as octal escapes. */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_match, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)))
}
