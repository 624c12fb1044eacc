import {expect} from 'chai'
import {execa} from 'execa'
import {writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {readPackageJsonFile} from '../../src/plugins/package-json.js'
import {tempDirs} from '../helpers/tmp.js'

/** What reading a linked plugin's package.json gave, and the CPU it spent: a hostile directory must cost little. */
async function read(path: string): Promise<{result: Buffer | Error; ms: number}> {
  const start = process.cpuUsage()
  const result = await readPackageJsonFile(path).catch((error: unknown) => error as Error)
  const used = process.cpuUsage(start)
  return {result, ms: (used.user + used.system) / 1000}
}

const HOSTILE: [string, (path: string) => Promise<unknown>, RegExp][] = [
  ['fifo', (path) => execa('mkfifo', [path]), /package\.json is a fifo, not a file$/],
  ['device', (path) => execa('ln', ['-s', '/dev/zero', path]), /package\.json is a device, not a file$/],
  ['2 GB', (path) => execa('truncate', ['-s', '2G', path]), /package\.json is 2\.0 GiB \(2147483648 bytes\): a package\.json may be at most 1\.0 MiB \(1048576 bytes\)$/],
]

describe("a linked plugin directory's package.json, read with limits", () => {
  const dirs = tempDirs('cleanroom-package-json-')
  afterEach(() => dirs.cleanup())

  it('reads a regular package.json', async () => {
    const path = join(await dirs.make(), 'package.json')
    await writeFile(path, '{"name": "p"}')
    expect((await read(path)).result).to.deep.equal(Buffer.from('{"name": "p"}'))
  })

  it('refuses a fifo, a device or a 2 GB package.json at once, without reading it', async () => {
    for (const [what, make, expected] of HOSTILE) {
      const path = join(await dirs.make(), 'package.json')
      await make(path)
      const {result, ms} = await read(path)
      expect(ms, what).to.be.below(200)
      expect(result, what).to.be.instanceOf(Error)
      expect((result as Error).message, what).to.match(expected)
    }
  })
})
