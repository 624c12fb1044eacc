import {Parser} from '@oclif/core'
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import Exec from '../../src/commands/exec.js'
import {type ManifestFlag, parseFlags} from '../../src/launch/argv.js'
import {PROJECT_ROOT} from '../helpers/cli.js'

const manifest = JSON.parse(readFileSync(join(PROJECT_ROOT, 'oclif.manifest.json'), 'utf8')) as {
  commands: Record<string, {flags: Record<string, ManifestFlag>}>
}
const execFlags = manifest.commands.exec!.flags

/** What oclif makes of the same line, flags only, unset ones left out. */
async function oclifFlags(argv: string[]): Promise<Record<string, unknown>> {
  const {flags} = await Parser.parse(argv, {flags: {...Exec.baseFlags, ...Exec.flags}, args: {}, strict: false, '--': true})
  return Object.fromEntries(Object.entries(flags).filter(([, value]) => value !== undefined && value !== false))
}

describe('the fast start path: exec flags', () => {
  it('reads the flags oclif declared for exec from the built manifest', () => {
    expect(Object.keys(execFlags).sort()).to.deep.equal(Object.keys({...Exec.baseFlags, ...Exec.flags}).sort())
  })

  const agreed: string[][] = [
    ['--', 'true'],
    ['--keep', '--', 'true'],
    ['-e', 'A=1', '-e', 'B', '--env=C=3', '--', 'env'],
    ['--sandbox-id', 'cr_X', '--', 'ls', '-la'],
    ['--sandbox-id=cr_X', '-t', '--', 'sh'],
    ['-c', '/tmp/repo', '--backend', 'linux-ns', '--dangerously-allow-all', '--', 'curl', 'x'],
    ['--host', 'unix:///run/x.sock', '--tty', '--', 'true', '--keep'],
    ['--chdir=/a=b', '--', 'true'],
    ['-c=/tmp/repo', '-e=A=1', '--', 'true'],
    ['--image', 'ghcr.io/acme/base:1.2', '--', 'true'],
    ['--image=127.0.0.1:5000/a/b@sha256:0123', '--keep', '--', 'true'],
  ]
  for (const argv of agreed) {
    it(`parses ${argv.join(' ')} as oclif does`, async () => {
      const fast = parseFlags(argv, execFlags)
      expect(fast, 'the fast path takes this line').to.not.equal(undefined)
      expect(fast).to.deep.equal(await oclifFlags(argv))
    })
  }

  const leftToOclif: string[][] = [
    ['true'],
    ['--help', '--', 'true'],
    ['-h', '--', 'true'],
    ['--bogus', '--', 'true'],
    ['--keep', '--keep', '--', 'true'],
    ['--keep=yes', '--', 'true'],
    ['--backend', 'docker', '--', 'true'],
    ['--sandbox-id', '--', 'true'],
    ['--sandbox-id', 'a', '--sandbox-id', 'b', '--', 'true'],
    ['-e', '--keep', '--', 'true'],
    ['-tk', '--', 'true'],
    ['--no-keep', '--', 'true'],
    ['word', '--', 'true'],
    ['--kee', '--', 'true'],
  ]
  for (const argv of leftToOclif) {
    it(`leaves ${argv.join(' ')} to oclif`, () => {
      expect(parseFlags(argv, execFlags)).to.equal(undefined)
    })
  }
})
