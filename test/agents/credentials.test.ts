import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {chmod, lstat, mkdir, readFile, stat, symlink, utimes, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath, pathToFileURL} from 'node:url'

import {applyCodexTrust} from '../../src/agents/codex-trust.js'
import {normalizeCredentialTarget, SANDBOX_HOME, validateCredentialSource, validateCredentialTarget} from '../../src/agents/credential-paths.js'
import {type CredentialArchive, packCredentials} from '../../src/agents/credentials.js'
import type {CredentialMapping} from '../../src/agents/spec.js'
import {CleanroomError} from '../../src/errors/index.js'
import {PROJECT_ROOT} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

const SANDBOX_UID = 1234
const SANDBOX_GID = 2345
const TRUST_TABLE = '[projects."/workspace"]\ntrust_level = "trusted"\n'
const AUTH_BYTES = Buffer.from('{"token":"sk-\u00e9\u2713"}\n\u0000\u00ff', 'latin1')
const OLD_MTIME = new Date('2021-02-03T04:05:06Z')

/** One line of `tar -tvf --numeric-owner`: permissions, owner and name. */
interface ListedEntry {
  perms: string
  owner: string
  name: string
}

function listArchive(tarFile: string): ListedEntry[] {
  const out = execFileSync('tar', ['-tvf', tarFile, '--numeric-owner'], {encoding: 'utf8'})
  return out
    .trim()
    .split('\n')
    .map((line) => {
      const [perms = '', owner = '', , , , ...name] = line.split(/\s+/)
      return {perms, owner, name: name.join(' ')}
    })
}

function extractArchive(tarFile: string, into: string): void {
  execFileSync('tar', ['-xpf', tarFile, '-C', into])
}

async function modeOf(path: string): Promise<number> {
  return (await lstat(path)).mode & 0o7777
}

async function writeFileWithMode(path: string, content: Buffer | string, mode: number): Promise<void> {
  await writeFile(path, content)
  await chmod(path, mode)
}

function thrownBy(fn: () => unknown): unknown {
  try {
    fn()
  } catch (error) {
    return error
  }
  throw new Error('expected a throw')
}

describe('agent credentials', () => {
  const tmp = tempDirs('cleanroom-credentials-')
  afterEach(() => tmp.cleanup())

  describe('normalizeCredentialTarget', () => {
    it('gives paths relative to the sandbox home', () => {
      expect(normalizeCredentialTarget('~/.codex/auth.json')).to.equal('.codex/auth.json')
      expect(normalizeCredentialTarget('.codex/auth.json')).to.equal('.codex/auth.json')
      expect(normalizeCredentialTarget(`${SANDBOX_HOME}/.codex/auth.json`)).to.equal('.codex/auth.json')
      expect(normalizeCredentialTarget('  ~/.codex/  ')).to.equal('.codex')
      expect(normalizeCredentialTarget('~/.config//gh/./hosts.yml')).to.equal('.config/gh/hosts.yml')
      expect(normalizeCredentialTarget('~/a/../b')).to.equal('b')
      expect(normalizeCredentialTarget('/root/.codex/auth.json', '/root')).to.equal('.codex/auth.json')
    })

    for (const target of ['../x', '~/../x', 'a/../../x', '/etc/passwd', `${SANDBOX_HOME}x/y`, `${SANDBOX_HOME}/../x`, 'a\0b', '~root/x', '', '  ', '~', '~/', '.', SANDBOX_HOME]) {
      it(`refuses ${JSON.stringify(target)}`, () => {
        const error = thrownBy(() => normalizeCredentialTarget(target))
        expect(error).to.be.instanceOf(CleanroomError)
        expect(error).to.have.property('code', 'credential_target_invalid')
        if (target.trim() !== '') expect((error as Error).message).to.include(JSON.stringify(target))
        expect(validateCredentialTarget(target)).to.be.a('string')
      })
    }

    it('says which rule a target broke', () => {
      expect(validateCredentialTarget('/etc/passwd')).to.equal(
        `credential target "/etc/passwd" is outside the sandbox home ${SANDBOX_HOME}; a credential target must be ~/…, a path relative to the sandbox home, or an absolute path inside it`,
      )
      expect(validateCredentialTarget('~root/x')).to.match(/~user form/)
      expect(validateCredentialTarget('~')).to.match(/sandbox home itself/)
      expect(validateCredentialTarget('~/.codex/auth.json')).to.equal(undefined)
    })
  })

  describe('validateCredentialSource', () => {
    it('accepts ~/… and absolute sources', () => {
      for (const source of ['~/.codex/auth.json', '~', '/etc/gitconfig', '~/.config/gh/']) {
        expect(validateCredentialSource(source), source).to.equal(undefined)
      }
    })

    it('refuses NUL, .. segments, ~user forms and relative paths', () => {
      expect(validateCredentialSource('~/a\0b')).to.match(/NUL/)
      expect(validateCredentialSource('~/../etc/shadow')).to.match(/"\.\." segments/)
      expect(validateCredentialSource('/home/me/../other')).to.match(/"\.\." segments/)
      expect(validateCredentialSource('~root/.ssh/id_rsa')).to.match(/~user form/)
      expect(validateCredentialSource('.codex/auth.json')).to.match(/must be ~\/… \(your home\) or an absolute path/)
      expect(validateCredentialSource('')).to.match(/is empty/)
    })
  })

  describe('packCredentials', () => {
    /**
     * A host home with the shapes credentials come in: files of several modes, a
     * tree, links to a file, to a directory and to nothing, a link loop and a FIFO.
     */
    async function makeHostHome(): Promise<string> {
      const home = await tmp.make()
      await mkdir(join(home, '.codex'))
      await writeFileWithMode(join(home, '.codex', 'auth.json'), AUTH_BYTES, 0o600)
      await writeFileWithMode(join(home, '.codex', 'config.toml'), 'model = "o3"', 0o644)
      await utimes(join(home, '.codex', 'auth.json'), OLD_MTIME, OLD_MTIME)

      const tool = join(home, '.config', 'tool')
      await mkdir(join(tool, 'nested'), {recursive: true})
      await writeFileWithMode(join(tool, 'settings.json'), '{"a":1}\n', 0o644)
      await writeFileWithMode(join(tool, 'nested', 'deep.txt'), 'deep\n', 0o640)
      await writeFileWithMode(join(tool, 'nested', 'run.sh'), '#!/bin/sh\n', 0o750)
      await symlink('../../.codex/auth.json', join(tool, 'link-to-file'))
      await symlink('missing-target', join(tool, 'broken-link'))
      await symlink('..', join(tool, 'nested', 'loop'))
      execFileSync('mkfifo', [join(tool, 'pipe')])
      await chmod(join(tool, 'nested'), 0o700)
      await chmod(tool, 0o711)

      await mkdir(join(home, 'dotfiles'))
      await writeFileWithMode(join(home, 'dotfiles', 'hosts.yml'), 'github.com:\n  oauth_token: x\n', 0o600)
      await mkdir(join(home, '.config', 'gh'))
      await symlink(join(home, 'dotfiles', 'hosts.yml'), join(home, '.config', 'gh', 'hosts.yml'))

      await mkdir(join(home, 'shared'))
      await writeFileWithMode(join(home, 'shared', 'token'), 'shared\n', 0o400)
      await chmod(join(home, 'shared'), 0o750)
      await symlink('shared', join(home, 'linked-dir'))

      await symlink('nowhere', join(home, 'dangling'))
      return home
    }

    const MAPPINGS: CredentialMapping[] = [
      {source: '~/.codex/auth.json', target: '~/.codex/auth.json'},
      {source: '~/.codex/config.toml', target: '~/.codex/config.toml', transform: 'codex-trust'},
      {source: '~/.config/tool', target: '~/.config/tool'},
      {source: '~/.config/gh/hosts.yml', target: '~/.config/gh/hosts.yml'},
      {source: '~/linked-dir', target: '.linked'},
      {source: '~/dangling', target: '~/.dangling'},
      {source: '~/.missing/creds', target: '~/.missing/creds'},
    ]

    async function packAndExtract(
      mappings: readonly CredentialMapping[],
      hostHome: string,
    ): Promise<{archive: CredentialArchive; listing: ListedEntry[]; out: string}> {
      const archive = await packCredentials(mappings, {hostHome, uid: SANDBOX_UID, gid: SANDBOX_GID})
      const work = await tmp.make()
      const tarFile = join(work, 'credentials.tar')
      await writeFile(tarFile, archive.tar)
      const out = join(work, 'home')
      await mkdir(out)
      extractArchive(tarFile, out)
      return {archive, listing: listArchive(tarFile), out}
    }

    it('packs files with their bytes, modes and mtimes, owned by the sandbox user', async () => {
      const home = await makeHostHome()
      const {archive, listing, out} = await packAndExtract(MAPPINGS, home)

      expect(listing.map((entry) => entry.owner)).to.deep.equal(listing.map(() => `${SANDBOX_UID}/${SANDBOX_GID}`))
      expect(listing.map((entry) => [entry.perms, entry.name])).to.deep.equal([
        ['drwx------', '.codex/'],
        ['-rw-------', '.codex/auth.json'],
        ['-rw-r--r--', '.codex/config.toml'],
        ['drwx------', '.config/'],
        ['drwx--x--x', '.config/tool/'],
        ['-rw-------', '.config/tool/link-to-file'],
        ['drwx------', '.config/tool/nested/'],
        ['-rw-r-----', '.config/tool/nested/deep.txt'],
        ['-rwxr-x---', '.config/tool/nested/run.sh'],
        ['-rw-r--r--', '.config/tool/settings.json'],
        ['drwx------', '.config/gh/'],
        ['-rw-------', '.config/gh/hosts.yml'],
        ['drwxr-x---', '.linked/'],
        ['-r--------', '.linked/token'],
      ])

      expect(await readFile(join(out, '.codex', 'auth.json'))).to.deep.equal(AUTH_BYTES)
      expect(await modeOf(join(out, '.codex', 'auth.json'))).to.equal(0o600)
      expect((await stat(join(out, '.codex', 'auth.json'))).mtime.getTime()).to.equal(OLD_MTIME.getTime())
      expect(await modeOf(join(out, '.codex'))).to.equal(0o700)
      expect(await modeOf(join(out, '.config', 'tool'))).to.equal(0o711)
      expect(await modeOf(join(out, '.config', 'tool', 'nested', 'run.sh'))).to.equal(0o750)
      expect(await readFile(join(out, '.config', 'tool', 'nested', 'deep.txt'), 'utf8')).to.equal('deep\n')
      expect(await modeOf(join(out, '.linked', 'token'))).to.equal(0o400)

      const files = archive.files.map(({source, target, mode, size}) => ({source, target, mode, size}))
      expect(files).to.deep.include({source: join(home, '.codex', 'auth.json'), target: '.codex/auth.json', mode: 0o600, size: AUTH_BYTES.length})
      expect(archive.files.map((file) => file.target)).to.deep.equal(listing.filter((entry) => entry.perms.startsWith('-')).map((entry) => entry.name))
    })

    it('dereferences symlinks to files and directories', async () => {
      const home = await makeHostHome()
      const {out} = await packAndExtract(MAPPINGS, home)

      const viaLink = join(out, '.config', 'tool', 'link-to-file')
      expect((await lstat(viaLink)).isFile()).to.equal(true)
      expect(await readFile(viaLink)).to.deep.equal(AUTH_BYTES)
      expect(await modeOf(viaLink)).to.equal(0o600)

      const hosts = join(out, '.config', 'gh', 'hosts.yml')
      expect((await lstat(hosts)).isFile()).to.equal(true)
      expect(await readFile(hosts, 'utf8')).to.equal('github.com:\n  oauth_token: x\n')

      expect((await lstat(join(out, '.linked'))).isDirectory()).to.equal(true)
      expect(await readFile(join(out, '.linked', 'token'), 'utf8')).to.equal('shared\n')
    })

    it('skips missing sources and warns about broken links, link loops and special files', async () => {
      const home = await makeHostHome()
      const {archive, listing} = await packAndExtract(MAPPINGS, home)

      expect(archive.skipped).to.deep.equal([
        {source: '~/dangling', reason: 'symlink to missing nowhere'},
        {source: '~/.missing/creds', reason: 'not found'},
      ])
      expect(archive.warnings).to.deep.equal([
        'skipped ~/.config/tool/broken-link: symlink to missing missing-target',
        'skipped ~/.config/tool/nested/loop: symlink to a directory that contains it',
        'skipped ~/.config/tool/pipe: a FIFO, not a regular file or directory',
        'skipped ~/dangling: symlink to missing nowhere',
      ])
      const names = listing.map((entry) => entry.name)
      for (const absent of ['.dangling', '.missing/', '.missing/creds', '.config/tool/broken-link', '.config/tool/pipe', '.config/tool/nested/loop/']) {
        expect(names).to.not.include(absent)
      }
    })

    it('gives an empty archive when every source is missing', async () => {
      const home = await tmp.make()
      const archive = await packCredentials([{source: '~/.codex/auth.json', target: '~/.codex/auth.json'}], {hostHome: home, uid: 1, gid: 1})

      expect(archive.files).to.deep.equal([])
      expect(archive.skipped).to.deep.equal([{source: '~/.codex/auth.json', reason: 'not found'}])
      expect(archive.tar).to.deep.equal(Buffer.alloc(1024))
    })

    it('lets a later mapping of the same target win, and says so when both exist', async () => {
      const home = await tmp.make()
      await writeFile(join(home, 'first.json'), 'first')
      await writeFile(join(home, 'second.json'), 'second')
      const target = '~/.tool/creds.json'

      const both = await packAndExtract(
        [
          {source: '~/first.json', target},
          {source: '~/second.json', target},
        ],
        home,
      )
      expect(both.listing.map((entry) => entry.name)).to.deep.equal(['.tool/', '.tool/creds.json'])
      expect(await readFile(join(both.out, '.tool', 'creds.json'), 'utf8')).to.equal('second')
      expect(both.archive.warnings).to.deep.equal(['~/.tool/creds.json: ~/second.json replaces ~/first.json (the later credential mapping wins)'])

      const fallback = await packAndExtract(
        [
          {source: '~/first.json', target},
          {source: '~/not-there.json', target},
        ],
        home,
      )
      expect(await readFile(join(fallback.out, '.tool', 'creds.json'), 'utf8')).to.equal('first')
      expect(fallback.archive.warnings).to.deep.equal([])
    })

    it('packs a file once, without a warning, when a directory mapping covers it too', async () => {
      const home = await tmp.make()
      await mkdir(join(home, '.codex'))
      await writeFile(join(home, '.codex', 'auth.json'), '{}')

      const {archive, listing} = await packAndExtract(
        [
          {source: '~/.codex/auth.json', target: '~/.codex/auth.json'},
          {source: '~/.codex', target: '~/.codex'},
        ],
        home,
      )
      expect(listing.map((entry) => entry.name)).to.deep.equal(['.codex/', '.codex/auth.json'])
      expect(archive.warnings).to.deep.equal([])
    })

    it('refuses targets outside the sandbox home before reading anything', async () => {
      const home = await tmp.make()
      await writeFile(join(home, 'x'), 'x')
      for (const target of ['../x', '~/../x', '/etc/passwd', 'a\0b', '~root/x']) {
        let error: unknown
        try {
          await packCredentials([{source: '~/x', target}], {hostHome: home, uid: 1, gid: 1})
        } catch (error_) {
          error = error_
        }
        expect(error, target).to.be.instanceOf(CleanroomError).with.property('code', 'credential_target_invalid')
      }
    })

    it('refuses sources with .. segments', async () => {
      const home = await tmp.make()
      let error: unknown
      try {
        await packCredentials([{source: '~/../etc/passwd', target: '~/x'}], {hostHome: home, uid: 1, gid: 1})
      } catch (error_) {
        error = error_
      }
      expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'agent_spec_invalid')
    })

    it('fails naming the file and the fix when a source cannot be read', async () => {
      const home = await tmp.make()
      await chmod(home, 0o755)
      const secret = join(home, 'secret.json')
      await writeFileWithMode(secret, 'x', 0o000)
      const lockedDir = join(home, 'locked')
      await mkdir(lockedDir)
      await writeFile(join(lockedDir, 'inner'), 'x')
      await chmod(lockedDir, 0o000)
      try {
        const results = packAsAnotherUser(home, [
          [{source: '~/secret.json', target: '~/secret.json'}],
          [{source: '~/locked', target: '~/locked'}],
        ])
        expect(results).to.have.length(2)
        for (const [result, path] of [
          [results[0], secret],
          [results[1], lockedDir],
        ] as const) {
          expect(result).to.deep.include({code: 'credential_source_unreadable', message: `cannot read credential source ${path}: permission denied`})
          expect(result?.suggestions?.[0]).to.include(`chmod u+rX ${path}`)
        }
      } finally {
        await chmod(lockedDir, 0o700)
      }
    })
  })

  describe('codex-trust', () => {
    it('appends the trust table after a blank line', () => {
      expect(applyCodexTrust(Buffer.from('model = "o3"\n')).toString()).to.equal(`model = "o3"\n\n${TRUST_TABLE}`)
    })

    it('ends an unterminated last line first', () => {
      expect(applyCodexTrust(Buffer.from('model = "o3"')).toString()).to.equal(`model = "o3"\n\n${TRUST_TABLE}`)
    })

    it('writes only the table into an empty file', () => {
      expect(applyCodexTrust(Buffer.alloc(0)).toString()).to.equal(TRUST_TABLE)
    })

    it('is idempotent', () => {
      const once = applyCodexTrust(Buffer.from('model = "o3"'))
      expect(applyCodexTrust(once)).to.deep.equal(once)
    })

    it('keeps a file that already trusts /workspace byte for byte', () => {
      const existing = [
        `[projects.'/workspace']\ntrust_level = "untrusted"\n`,
        '[projects."/workspace"]\ntrust_level = "trusted"',
        'model = "o3"\n  [ projects . "/workspace" ]  # mine\ntrust_level = "trusted"\n',
        'model = "o3"\r\n[projects."/workspace"]\r\ntrust_level = "trusted"\r\n',
      ]
      for (const text of existing) {
        const input = Buffer.from(text)
        expect(applyCodexTrust(input), text).to.equal(input)
      }
    })

    it('does not mistake other lines for the table header', () => {
      for (const text of [
        '# [projects."/workspace"] is added by cleanroom\n',
        '[projects."/workspace/sub"]\ntrust_level = "trusted"\n',
        'note = "[projects.\\"/workspace\\"]"\n',
      ]) {
        expect(applyCodexTrust(Buffer.from(text)).toString(), text).to.equal(`${text}\n${TRUST_TABLE}`)
      }
    })

    it('keeps bytes that are not UTF-8', () => {
      const input = Buffer.from([0x61, 0x20, 0x3d, 0x20, 0x22, 0xff, 0xfe, 0x22, 0x0a])
      const output = applyCodexTrust(input)
      expect(output.subarray(0, input.length)).to.deep.equal(input)
      expect(output.subarray(input.length).toString()).to.equal(`\n${TRUST_TABLE}`)
    })

    it('adds one table when the packed config is packed again', async () => {
      const home = await tmp.make()
      await mkdir(join(home, '.codex'))
      await writeFile(join(home, '.codex', 'config.toml'), 'model = "o3"')
      const mapping: CredentialMapping = {source: '~/.codex/config.toml', target: '~/.codex/config.toml', transform: 'codex-trust'}

      const first = await packCredentials([mapping], {hostHome: home, uid: 1, gid: 1})
      const work = await tmp.make()
      await writeFile(join(work, 'first.tar'), first.tar)
      extractArchive(join(work, 'first.tar'), home)
      const second = await packCredentials([mapping], {hostHome: home, uid: 1, gid: 1})
      await writeFile(join(work, 'second.tar'), second.tar)
      const out = join(work, 'out')
      await mkdir(out)
      extractArchive(join(work, 'second.tar'), out)

      const config = await readFile(join(out, '.codex', 'config.toml'), 'utf8')
      expect(config).to.equal(`model = "o3"\n\n${TRUST_TABLE}`)
      expect(second.files).to.deep.equal([{source: join(home, '.codex', 'config.toml'), target: '.codex/config.toml', mode: 0o644, size: Buffer.byteLength(config)}])
    })

    it('leaves the file byte for byte with transform: none', async () => {
      const home = await tmp.make()
      await mkdir(join(home, '.codex'))
      await writeFile(join(home, '.codex', 'config.toml'), 'model = "o3"')
      const archive = await packCredentials([{source: '~/.codex/config.toml', target: '~/.codex/config.toml', transform: 'none'}], {hostHome: home, uid: 1, gid: 1})
      const out = await tmp.make()
      await writeFile(join(out, 'a.tar'), archive.tar)
      extractArchive(join(out, 'a.tar'), out)
      expect(await readFile(join(out, '.codex', 'config.toml'), 'utf8')).to.equal('model = "o3"')
    })

    it('rewrites the config.toml of a directory mapping and nothing else', async () => {
      const home = await tmp.make()
      await mkdir(join(home, '.codex'))
      await writeFile(join(home, '.codex', 'config.toml'), 'model = "o3"\n')
      await writeFile(join(home, '.codex', 'auth.json'), '{}')

      const archive = await packCredentials([{source: '~/.codex', target: '~/.codex', transform: 'codex-trust'}], {hostHome: home, uid: 1, gid: 1})
      const work = await tmp.make()
      await writeFile(join(work, 'a.tar'), archive.tar)
      extractArchive(join(work, 'a.tar'), work)

      expect(await readFile(join(work, '.codex', 'config.toml'), 'utf8')).to.equal(`model = "o3"\n\n${TRUST_TABLE}`)
      expect(await readFile(join(work, '.codex', 'auth.json'), 'utf8')).to.equal('{}')
    })
  })
})

interface PackFailure {
  code?: string
  message?: string
  suggestions?: string[]
}

/**
 * Packs each mapping list in a child process whose user cannot read 0000 files:
 * root reads everything, so as root the child drops to `nobody` with setpriv.
 */
function packAsAnotherUser(hostHome: string, runs: CredentialMapping[][]): (PackFailure | undefined)[] {
  const moduleUrl = pathToFileURL(fileURLToPath(new URL('../../src/agents/credentials.ts', import.meta.url))).href
  const program = `
    import {packCredentials} from ${JSON.stringify(moduleUrl)}
    const results = []
    for (const mappings of ${JSON.stringify(runs)}) {
      try {
        await packCredentials(mappings, {hostHome: ${JSON.stringify(hostHome)}, uid: 1, gid: 1})
        results.push(undefined)
      } catch (error) {
        results.push({code: error.code, message: error.message, suggestions: error.suggestions})
      }
    }
    console.log(JSON.stringify(results))
  `
  const node = [process.execPath, '--import', 'tsx', '--input-type=module', '-e', program]
  const asRoot = process.getuid?.() === 0
  const argv = asRoot ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', ...node] : node
  const [command = '', ...args] = argv
  const child = spawnSync(command, args, {cwd: PROJECT_ROOT, encoding: 'utf8'})
  if (child.error) throw new Error(`cannot run ${command} (${asRoot ? 'setpriv from util-linux is needed to test as root' : 'node'}): ${child.error.message}`)
  if (child.status !== 0) throw new Error(`the unprivileged pack failed: ${child.stderr}`)
  return JSON.parse(child.stdout) as (PackFailure | undefined)[]
}
