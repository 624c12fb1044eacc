import {expect} from 'chai'
import {execa} from 'execa'
import {existsSync} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {findPolicyFile, loadPolicy, POLICY_SEARCH_PLACES, policyFileIn} from '../../src/policy/load.js'
import {noPolicyNotice} from '../../src/policy/notice.js'
import {tempDirs} from '../helpers/tmp.js'

const LOAD_MODULE = fileURLToPath(new URL('../../src/policy/load.ts', import.meta.url))
const TSX = import.meta.resolve('tsx')

/** A policy whose one allow rule names `host`, so a test can tell which file was read. */
function policyAllowing(host: string): string {
  return `version: 1\nsandbox:\n  network:\n    allow:\n      - ${host}:443\n`
}

async function put(path: string, text: string): Promise<string> {
  await mkdir(dirname(path), {recursive: true})
  await writeFile(path, text)
  return path
}

describe('policy loading', () => {
  const dirs = tempDirs('cleanroom-policy-test-')
  afterEach(() => dirs.cleanup())

  /** A git repository (a `.git` directory) with `sub/dir` inside it. */
  async function repo(): Promise<string> {
    const root = await dirs.make()
    await mkdir(join(root, '.git'))
    await mkdir(join(root, 'sub', 'dir'), {recursive: true})
    return root
  }

  describe('search', () => {
    it('finds cleanroom.yaml in the directory', async () => {
      const root = await repo()
      const path = await put(join(root, 'cleanroom.yaml'), policyAllowing('root.example'))
      expect(await findPolicyFile(root)).to.equal(path)
    })

    it('falls back to .buildkite/cleanroom.yaml', async () => {
      const root = await repo()
      const path = await put(join(root, '.buildkite', 'cleanroom.yaml'), policyAllowing('buildkite.example'))
      expect(await findPolicyFile(root)).to.equal(path)
      expect((await loadPolicy(root)).policy.allow[0]?.host).to.equal('buildkite.example')
    })

    it('prefers cleanroom.yaml when both exist', async () => {
      const root = await repo()
      const path = await put(join(root, 'cleanroom.yaml'), policyAllowing('root.example'))
      await put(join(root, '.buildkite', 'cleanroom.yaml'), policyAllowing('buildkite.example'))
      expect(await findPolicyFile(root)).to.equal(path)
      expect((await loadPolicy(root)).policy.allow[0]?.host).to.equal('root.example')
    })

    it('searches from a subdirectory up to the git root, the nearest file winning', async () => {
      const root = await repo()
      const atRoot = await put(join(root, 'cleanroom.yaml'), policyAllowing('root.example'))
      expect(await findPolicyFile(join(root, 'sub', 'dir'))).to.equal(atRoot)
      const inSub = await put(join(root, 'sub', '.buildkite', 'cleanroom.yaml'), policyAllowing('sub.example'))
      expect(await findPolicyFile(join(root, 'sub', 'dir'))).to.equal(inSub)
    })

    it('does not search beyond the git root', async () => {
      const outer = await dirs.make()
      await put(join(outer, 'cleanroom.yaml'), policyAllowing('outer.example'))
      const root = join(outer, 'repo')
      await mkdir(join(root, '.git'), {recursive: true})
      await mkdir(join(root, 'sub'))
      expect(await findPolicyFile(join(root, 'sub'))).to.equal(undefined)
      expect(await loadPolicy(join(root, 'sub'))).to.deep.equal({source: null, policy: DEFAULT_POLICY})
    })

    it('takes a .git file (worktree or submodule) as the git root too', async () => {
      const outer = await dirs.make()
      await put(join(outer, 'cleanroom.yaml'), policyAllowing('outer.example'))
      await put(join(outer, 'worktree', '.git'), 'gitdir: /elsewhere/.git/worktrees/w\n')
      await mkdir(join(outer, 'worktree', 'sub'))
      expect(await findPolicyFile(join(outer, 'worktree', 'sub'))).to.equal(undefined)
    })

    it('searches only the directory itself outside a git repository', async () => {
      const outer = await dirs.make()
      const path = await put(join(outer, 'cleanroom.yaml'), policyAllowing('outer.example'))
      await mkdir(join(outer, 'sub'))
      expect(await findPolicyFile(join(outer, 'sub'))).to.equal(undefined)
      expect(await findPolicyFile(outer)).to.equal(path)
    })

    it('refuses a directory that does not exist rather than giving the default policy', async () => {
      const missing = join(await dirs.make(), 'typo')
      for (const attempt of [loadPolicy(missing), findPolicyFile(missing), policyFileIn(missing)]) {
        const error = await attempt.catch((error: unknown) => error)
        expect(error).to.be.instanceOf(CleanroomError).with.property('message', `cannot look for a policy in ${missing}: not a directory`)
        expect((error as CleanroomError).exitCode).to.equal(2)
      }
    })

    it('looks in one directory only with policyFileIn', async () => {
      const root = await repo()
      await put(join(root, 'cleanroom.yaml'), policyAllowing('root.example'))
      expect(await policyFileIn(join(root, 'sub'))).to.equal(undefined)
      expect(await policyFileIn(root)).to.equal(join(root, 'cleanroom.yaml'))
    })
  })

  describe('the user config directory', () => {
    const saved = {HOME: process.env.HOME, XDG_CONFIG_HOME: process.env.XDG_CONFIG_HOME}
    afterEach(() => {
      for (const [name, value] of Object.entries(saved)) {
        if (value === undefined) delete process.env[name]
        else process.env[name] = value
      }
    })

    it('is never searched, even with a policy under every name a config loader might look for', async () => {
      const home = await dirs.make()
      process.env.HOME = home
      process.env.XDG_CONFIG_HOME = join(home, 'xdg')
      for (const configDir of [join(home, 'xdg', 'cleanroom'), join(home, '.config', 'cleanroom')]) {
        for (const name of ['config', 'config.yaml', 'cleanroom.yaml', ...POLICY_SEARCH_PLACES]) {
          await put(join(configDir, name), policyAllowing('from-user-config.example'))
        }
      }
      const root = join(home, 'src', 'app')
      await mkdir(join(root, '.git'), {recursive: true})

      expect(await findPolicyFile(root)).to.equal(undefined)
      expect(await findPolicyFile(home)).to.equal(undefined)
      expect((await loadPolicy(root)).source).to.equal(null)
    })
  })

  describe('files that must not be trusted', () => {
    it('never runs a .config/config.js of the working directory (a config loader\'s meta config)', async () => {
      const root = await repo()
      const marker = join(root, 'meta-config-ran')
      await put(join(root, 'cleanroom.yaml'), policyAllowing('repo.example'))
      await put(
        join(root, '.config', 'config.js'),
        `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')\n` +
          `module.exports = {cleanroom: {version: 1, sandbox: {network: {allow: ['meta.example:443']}}}}\n`,
      )
      // A fresh process whose working directory is the repository, as when a user runs cleanroom in it.
      const script = `import {loadPolicy} from ${JSON.stringify(LOAD_MODULE)}\nconst {source, policy} = await loadPolicy('.')\nconsole.log(JSON.stringify({source, hosts: policy.allow.map((rule) => rule.host)}))`
      const result = await execa(process.execPath, ['--import', TSX, '--input-type=module', '--eval', script], {cwd: root, reject: false})
      expect(result.stderr).to.equal('')
      expect(JSON.parse(result.stdout)).to.deep.equal({source: join(root, 'cleanroom.yaml'), hosts: ['repo.example']})
      expect(existsSync(marker), '.config/config.js was executed').to.equal(false)
    })

    it('does not follow $import, and reports it as an unknown key', async () => {
      const root = await repo()
      const marker = join(root, 'import-ran')
      await put(join(root, 'evil.js'), `require('node:fs').writeFileSync(${JSON.stringify(marker)}, 'ran')\nmodule.exports = {}\n`)
      await put(join(root, 'cleanroom.yaml'), '$import: evil.js\nversion: 1\n')
      const error = await loadPolicy(root).catch((error: unknown) => error)
      expect(error).to.be.instanceOf(CleanroomError)
      expect((error as CleanroomError).message).to.contain('cleanroom.yaml:1:1 $import: unknown key (expected one of: version, repository, sandbox, expose)')
      expect(existsSync(marker), 'evil.js was executed').to.equal(false)
    })
  })

  describe('loading', () => {
    it('returns the source and the compiled policy', async () => {
      const root = await repo()
      const path = await put(join(root, 'cleanroom.yaml'), policyAllowing('API.Example.com'))
      const loaded = await loadPolicy(join(root, 'sub'))
      expect(loaded.source).to.equal(path)
      expect(loaded.policy.allow).to.deep.equal([{host: 'api.example.com', ports: [443]}])
    })

    it('gives the default policy when there is no file', async () => {
      expect(await loadPolicy(await repo())).to.deep.equal({source: null, policy: DEFAULT_POLICY})
    })

    it('treats an empty cleanroom.yaml as the policy (invalid), not as absent', async () => {
      const root = await repo()
      await put(join(root, 'cleanroom.yaml'), '\n')
      await put(join(root, '.buildkite', 'cleanroom.yaml'), policyAllowing('buildkite.example'))
      const error = await loadPolicy(root).catch((error: unknown) => error)
      expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'policy_invalid')
      expect((error as CleanroomError).message).to.match(/cleanroom\.yaml:1:1 the policy is empty: it needs at least "version: 1"$/)
    })

    it('reports an invalid file with its path, line and column', async () => {
      const root = await repo()
      await put(join(root, 'cleanroom.yaml'), 'version: 1\nsandbox:\n  network:\n    default: allow\n')
      const error = await loadPolicy(root).catch((error: unknown) => error)
      expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'policy_invalid')
      expect((error as CleanroomError).message).to.equal(
        `policy invalid:\n${join(root, 'cleanroom.yaml')}:4:14 sandbox.network.default: unsupported value "allow": cleanroom requires deny-by-default`,
      )
    })

    it('words the notice for a repository without a policy', () => {
      expect(noPolicyNotice('/src/app')).to.equal(
        'no cleanroom.yaml found in /src/app or its parents up to the git root; using the built-in default policy (no network egress, host rootfs). Create one with: cleanroom policy init',
      )
    })
  })
})

describe('policy files that are not what they seem', () => {
  const dirs = tempDirs('cleanroom-policy-files-')
  afterEach(() => dirs.cleanup())

  async function refusal(dir: string): Promise<CleanroomError> {
    const start = process.cpuUsage()
    const error = await loadPolicy(dir).then(
      () => expect.fail('expected the policy to be refused'),
      (error_: unknown) => error_ as CleanroomError,
    )
    const used = process.cpuUsage(start)
    expect((used.user + used.system) / 1000, 'CPU time: refused at once').to.be.below(200)
    expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'policy_invalid')
    return error
  }

  it('refuses a fifo named cleanroom.yaml at once, without waiting for a writer', async () => {
    const dir = await dirs.make()
    await execa('mkfifo', [join(dir, 'cleanroom.yaml')])
    expect((await refusal(dir)).message).to.equal(`policy invalid:\n${join(dir, 'cleanroom.yaml')}:1:1 is a fifo, not a regular file: a policy is a YAML file`)
  })

  it('refuses a cleanroom.yaml that links to /dev/zero', async () => {
    const dir = await dirs.make()
    await execa('ln', ['-s', '/dev/zero', join(dir, 'cleanroom.yaml')])
    expect((await refusal(dir)).message).to.match(/cleanroom\.yaml:1:1 is a device, not a regular file: a policy is a YAML file$/)
  })

  it('refuses a 4 GiB file from its size, without reading it', async () => {
    const dir = await dirs.make()
    await execa('truncate', ['-s', '4G', join(dir, 'cleanroom.yaml')])
    expect((await refusal(dir)).message).to.match(/cleanroom\.yaml:1:1 is 4\.0 GiB \(4294967296 bytes\): a policy may be at most 1\.0 MiB \(1048576 bytes\)$/)
  })

  it('skips a directory named cleanroom.yaml and reads .buildkite/cleanroom.yaml', async () => {
    const dir = await dirs.make()
    await mkdir(join(dir, 'cleanroom.yaml'))
    await put(join(dir, '.buildkite', 'cleanroom.yaml'), policyAllowing('buildkite.example'))
    expect((await loadPolicy(dir)).policy.allow[0]?.host).to.equal('buildkite.example')
  })
})
