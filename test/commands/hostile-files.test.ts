import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

/**
 * The contract of `policy validate --json` and `config validate --json` for
 * the kinds of file that used to break it (exit 1, no file or line): exit 2
 * and a JSON error whose issues name the file at a line and column.
 */
const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x]', ...Array.from({length: 8}, (_, i) => `a${i + 1}: &a${i + 1} [${Array.from({length: 9}, () => `*a${i}`).join(', ')}]`)].join('\n')
const HOSTILE: [string, Buffer][] = [
  ['an alias bomb', Buffer.from(`${bomb}\n`)],
  ['an undefined alias', Buffer.from('version: 1\nsandbox: *nowhere\n')],
  ['10 MB', Buffer.concat([Buffer.from('version: 1\n#'), Buffer.alloc(10_000_000, 'x')])],
  ['1 MiB of "["', Buffer.from('['.repeat(1 << 20))],
  ['1 MB of unknown keys', Buffer.from(Array.from({length: 60_000}, (_, i) => `key_${i}: 1`).join('\n'))],
  ['invalid UTF-8', Buffer.concat([Buffer.from('version: 1\n'), Buffer.from([0xc3, 0x28])])],
  ['a NUL', Buffer.from('version: 1\nsandbox: a\0b\n')],
]

interface ErrorOutput {
  error: {code: string; details: {issues: {file: string; line: number; col: number}[]}}
}

describe('validate --json on hostile files', function () {
  this.timeout(120_000)
  const dirs = tempDirs('cleanroom-hostile-')
  after(() => dirs.cleanup())

  for (const [what, bytes] of HOSTILE) {
    it(`exits 2 with the file and its line for ${what}, as a policy and as a runtime config`, async () => {
      const base = await dirs.make()
      const env = isolatedEnv(join(base, 'home'))
      const repo = join(base, 'repo')
      await mkdir(join(repo, '.git'), {recursive: true})
      await writeFile(join(repo, 'cleanroom.yaml'), bytes)
      const config = join(base, 'config.yaml')
      await writeFile(config, bytes)

      for (const [args, file, code] of [
        [['policy', 'validate', '--json'], join(repo, 'cleanroom.yaml'), 'policy_invalid'],
        [['config', 'validate', '--json', '--path', config], config, 'config_invalid'],
      ] as const) {
        const result = await runCli(args, {cwd: repo, env})
        expect(result.exitCode, `${args.join(' ')}: ${result.stderr}`).to.equal(2)
        const output = JSON.parse(result.stdout) as ErrorOutput
        expect(output.error.code).to.equal(code)
        expect(output.error.details.issues).to.not.be.empty
        for (const issue of output.error.details.issues) {
          expect(issue.file).to.be.oneOf([file, 'cleanroom.yaml'])
          expect(issue.line).to.be.at.least(1)
          expect(issue.col).to.be.at.least(1)
        }
      }
    })
  }
})
