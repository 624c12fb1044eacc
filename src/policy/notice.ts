import {resolve} from 'node:path'

/** What to tell the user, once, when a sandbox gets the default policy because the repository has none. */
export function noPolicyNotice(dir: string): string {
  return (
    `no cleanroom.yaml found in ${resolve(dir)} or its parents up to the git root; ` +
    'using the built-in default policy (no network egress, host rootfs). Create one with: cleanroom policy init'
  )
}
