import {mkdtemp, rm} from 'node:fs/promises'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

/**
 * Temp dirs for one suite: `make()` creates one, `cleanup()` (call it from
 * afterEach/after) removes every dir made so far, also when a test failed.
 */
export function tempDirs(prefix = 'cleanroom-test-'): {make: () => Promise<string>; cleanup: () => Promise<void>} {
  const made: string[] = []
  return {
    async make() {
      const dir = await mkdtemp(join(tmpdir(), prefix))
      made.push(dir)
      return dir
    },
    async cleanup() {
      await Promise.all(made.splice(0).map((dir) => rm(dir, {recursive: true, force: true})))
    },
  }
}
