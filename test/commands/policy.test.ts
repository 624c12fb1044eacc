import {expect} from 'chai'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {isolatedEnv, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

const POLICY = `version: 1
sandbox:
  network:
    allow:
      - {host: API.GitHub.com., ports: [443], reason: git over https}
      - "registry.npmjs.org:443"
      - {host: "*.githubusercontent.com", ports: [443, 80]}
    deny:
      - 169.254.169.254
`

describe('policy commands', () => {
  const dirs = tempDirs('cleanroom-policy-cmd-')
  afterEach(() => dirs.cleanup())

  /** A git repository with `sub/` inside, and an isolated HOME next to it. */
  async function repo(policy?: string): Promise<{root: string; env: Record<string, string>}> {
    const base = await dirs.make()
    const root = join(base, 'repo')
    await mkdir(join(root, '.git'), {recursive: true})
    await mkdir(join(root, 'sub'))
    if (policy !== undefined) await writeFile(join(root, 'cleanroom.yaml'), policy)
    return {root, env: isolatedEnv(join(base, 'home'))}
  }

  describe('policy validate', () => {
    it('shows the compiled policy and its hash', async () => {
      const {root, env} = await repo(POLICY)
      const result = await runCli(['policy', 'validate'], {cwd: root, env})
      expect(result.stderr).to.equal('')
      expect(result.exitCode).to.equal(0)
      const lines = result.stdout.split('\n')
      expect(lines.slice(0, -1)).to.deep.equal([
        'policy valid: cleanroom.yaml',
        'image:   host root filesystem (no sandbox.image.ref)',
        'network: deny by default',
        'allow:',
        '  *.githubusercontent.com  80, 443',
        '  api.github.com           443        # git over https',
        '  registry.npmjs.org       443',
        'deny:',
        '  169.254.169.254          all ports',
      ])
      expect(lines.at(-1)).to.match(/^policy hash: [\da-f]{64}$/)
    })

    it("shows the Go cleanroom's later keys and the capabilities a backend needs for them", async () => {
      const spec = await readFile(new URL('../fixtures/policy/valid/go-spec-stages.yaml', import.meta.url), 'utf8')
      const {root, env} = await repo(spec)
      const result = await runCli(['policy', 'validate'], {cwd: root, env})
      expect(result.exitCode).to.equal(0)
      const lines = result.stdout.split('\n')
      const from = (heading: string) => lines.slice(lines.indexOf(heading))
      expect(from('network stages (each stage reaches only its own allow list):').slice(0, 9)).to.deep.equal([
        'network stages (each stage reaches only its own allow list):',
        '  workspace:',
        '    github.com        443',
        '  dependencies:',
        '    proxy.golang.org  443',
        '    sum.golang.org    443',
        '  services:',
        '    ghcr.io           443',
        '  execution: (none)',
      ])
      expect(lines).to.include.members([
        'resources: at least 4 vCPUs, 8 GiB memory, 16 GiB disk',
        'docker:  required',
        '  go-modules: mise exec -- go mod download',
        '    env:     GOMODCACHE=${HOME}/go/pkg/mod',
        'run before: mise exec -- go test ./...',
        'repository: checkout of origin at /workspace, submodules off',
        '  resources.memory     sandbox.resources.memory',
        '  policy.run_before    sandbox.run.before',
        '  repository.checkout  repository',
      ])
      const json = JSON.parse((await runCli(['policy', 'validate', '--json'], {cwd: root, env})).stdout) as {policy: {resources: unknown}}
      expect(json.policy.resources).to.deep.equal({vcpus: 4, memory_bytes: 8_589_934_592, disk_bytes: 17_179_869_184})
    })

    it('finds the policy from a subdirectory and prints {source, policy} with --json', async () => {
      const {root, env} = await repo(POLICY)
      const result = await runCli(['policy', 'validate', '--json'], {cwd: join(root, 'sub'), env})
      expect(result.exitCode).to.equal(0)
      const output = JSON.parse(result.stdout) as {source: string; policy: {allow: unknown[]; hash: string}}
      expect(output.source).to.equal(join(root, 'cleanroom.yaml'))
      expect(output.policy.allow).to.deep.equal([
        {host: '*.githubusercontent.com', ports: [80, 443]},
        {host: 'api.github.com', ports: [443], reason: 'git over https'},
        {host: 'registry.npmjs.org', ports: [443]},
      ])
      const text = await runCli(['policy', 'validate'], {cwd: root, env})
      expect(text.stdout).to.contain(`policy hash: ${output.policy.hash}`)
    })

    it('reads the directory given with -c', async () => {
      const {root, env} = await repo(POLICY)
      const result = await runCli(['policy', 'validate', '-c', root], {cwd: await dirs.make(), env})
      expect(result.exitCode).to.equal(0)
      expect(result.stdout.split('\n')[0]).to.equal(`policy valid: ${join(root, 'cleanroom.yaml')}`)
    })

    it('lists every problem with file:line:col and exits 2', async () => {
      const {root, env} = await repo('version: 2\nsandbox:\n  network:\n    default: allow\n    allow:\n      - {host: x.example, ports: [70000]}\n')
      const result = await runCli(['policy', 'validate'], {cwd: root, env})
      expect(result.exitCode).to.equal(2)
      expect(result.stdout).to.equal('')
      expect(result.stderr.split('\n')).to.deep.equal([
        'Error: policy invalid:',
        '  cleanroom.yaml:1:10 version: unsupported version 2: only version 1 is supported',
        '  cleanroom.yaml:4:14 sandbox.network.default: unsupported value "allow": cleanroom requires deny-by-default',
        '  cleanroom.yaml:6:35 sandbox.network.allow[0].ports[0]: 70000 is not a port (1-65535)',
        'Try this: Fix the lines above in cleanroom.yaml, then check again with: cleanroom policy validate',
      ])
    })

    it('gives the issues as JSON with --json and still exits 2', async () => {
      const {root, env} = await repo('version: 1\nsandbox:\n  image:\n    ref: alpine:3.20\n')
      const result = await runCli(['policy', 'validate', '--json'], {cwd: root, env})
      expect(result.exitCode).to.equal(2)
      const output = JSON.parse(result.stdout) as {error: {code: string; details: {issues: unknown[]}}}
      expect(output.error.code).to.equal('policy_invalid')
      expect(output.error.details.issues).to.deep.equal([
        {
          file: 'cleanroom.yaml',
          line: 4,
          col: 10,
          path: 'sandbox.image.ref',
          message: '"alpine:3.20" is not digest-pinned (expected repo/image@sha256:<digest>)',
        },
      ])
    })

    it('without a policy file, says so on stderr and shows the default policy', async () => {
      const {root, env} = await repo()
      const result = await runCli(['policy', 'validate'], {cwd: join(root, 'sub'), env})
      expect(result.exitCode).to.equal(0)
      expect(result.stderr).to.equal(
        `no cleanroom.yaml found in ${join(root, 'sub')} or its parents up to the git root; using the built-in default policy (no network egress, host rootfs). Create one with: cleanroom policy init`,
      )
      expect(result.stdout.split('\n')).to.deep.equal([
        'policy: built-in default',
        'image:   host root filesystem (no sandbox.image.ref)',
        'network: deny by default',
        'allow:   (none)',
        'deny:    (none)',
        `policy hash: ${DEFAULT_POLICY.hash}`,
      ])

      const json = await runCli(['policy', 'validate', '--json'], {cwd: root, env})
      expect(JSON.parse(json.stdout)).to.deep.equal({source: null, policy: DEFAULT_POLICY})
    })

    it('refuses a directory that does not exist with exit 2', async () => {
      const {root, env} = await repo()
      const result = await runCli(['policy', 'validate', '-c', join(root, 'typo')], {cwd: root, env})
      expect(result.exitCode).to.equal(2)
      expect(result.stderr).to.equal(`Error: cannot look for a policy in ${join(root, 'typo')}: not a directory`)
    })
  })

  describe('policy init', () => {
    it('writes a starter cleanroom.yaml that validates', async () => {
      const {root, env} = await repo()
      const init = await runCli(['policy', 'init'], {cwd: root, env})
      expect(init.exitCode).to.equal(0)
      expect(init.stdout).to.equal('policy written: cleanroom.yaml\nAdd allow rules for what sandboxes must reach, then check it with: cleanroom policy validate')
      expect(await readFile(join(root, 'cleanroom.yaml'), 'utf8')).to.match(/^# cleanroom policy: /)

      const validate = await runCli(['policy', 'validate', '--json'], {cwd: root, env})
      expect(validate.exitCode).to.equal(0)
      expect(JSON.parse(validate.stdout)).to.deep.equal({source: join(root, 'cleanroom.yaml'), policy: DEFAULT_POLICY})
    })

    it('refuses to overwrite a policy without --force, and says how', async () => {
      const {root, env} = await repo(POLICY)
      const refused = await runCli(['policy', 'init', '-c', root], {env})
      expect(refused.exitCode).to.equal(1)
      expect(refused.stderr.split('\n')).to.deep.equal([
        `Error: a policy already exists at ${join(root, 'cleanroom.yaml')}`,
        'Try this: Keep it and check it with: cleanroom policy validate',
        'Try this: Replace it with a new cleanroom.yaml: cleanroom policy init --force',
      ])
      expect(await readFile(join(root, 'cleanroom.yaml'), 'utf8')).to.equal(POLICY)

      const forced = await runCli(['policy', 'init', '-c', root, '--force'], {env})
      expect(forced.exitCode).to.equal(0)
      expect(await readFile(join(root, 'cleanroom.yaml'), 'utf8')).to.not.equal(POLICY)
    })
  })
})
