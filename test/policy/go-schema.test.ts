import {expect} from 'chai'
import {readdirSync, readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {CleanroomError} from '../../src/errors/index.js'
import {parseByteSize} from '../../src/policy/byte-size.js'
import {compilePolicyBytes, DEFAULT_POLICY, recompilePolicy, withAdditionalAllow} from '../../src/policy/compile.js'
import type {CompiledPolicy} from '../../src/policy/schema.js'
import {missingCapabilities, neededCapabilities, requireCapabilities} from '../../src/sandbox/capabilities.js'
import type {Capabilities} from '../../src/sandbox/types.js'

const VALID = fileURLToPath(new URL('../fixtures/policy/valid/', import.meta.url))
const compile = (text: string): CompiledPolicy => compilePolicyBytes('cleanroom.yaml', Buffer.from(text))

/** A policy with everything of the Go tool's later schema, each line replaceable by the hash tests. */
const FULL = `version: 1
repository:
  remote: origin
  path: /src
  submodules: true
  network:
    allow: [github.com:443]
expose:
  https:
    base: "{sandbox_id}.cleanroom.localhost"
    routes: [{port: 3000, hosts: ["app.{base}"]}]
sandbox:
  resources: {vcpus: 4, memory: 8GiB, disk: 16GiB}
  docker: {required: true}
  dependencies:
    - name: tools
      command: make tools
      inputs: {files: [Makefile]}
      env: {MODE: ci}
      outputs: {dirs: [build], files: [stamp]}
  services:
    - name: db
      command: [pg_ctl, start]
      inputs: {files: [db.conf]}
      outputs: {dirs: [/var/lib/pg]}
  run: {before: make check}
  network:
    dependencies: {allow: [proxy.golang.org:443]}
    services: {allow: [ghcr.io:443]}
    execution: {allow: [api.github.com:443]}
`

describe("the Go cleanroom's later policy keys", () => {
  describe('hash', () => {
    const variants: [string, string, string][] = [
      ['repository.remote', '  remote: origin', '  remote: upstream'],
      ['repository.path', '  path: /src', '  path: /code'],
      ['repository.submodules', '  submodules: true', '  submodules: false'],
      ['repository.network.allow', '    allow: [github.com:443]', '    allow: [gitlab.com:443]'],
      ['expose.https.base', '    base: "{sandbox_id}.cleanroom.localhost"', '    base: "{sandbox_id}.example.test"'],
      ['expose.https.routes', '{port: 3000, hosts: ["app.{base}"]}', '{port: 3001, hosts: ["app.{base}"]}'],
      ['sandbox.resources.vcpus', 'vcpus: 4', 'vcpus: 8'],
      ['sandbox.resources.memory', 'memory: 8GiB', 'memory: 9GiB'],
      ['sandbox.resources.disk', 'disk: 16GiB', 'disk: 17GiB'],
      ['sandbox.docker.required', 'docker: {required: true}', 'docker: {required: false}'],
      ['dependency command', 'command: make tools', 'command: make all'],
      ['dependency inputs', 'inputs: {files: [Makefile]}', 'inputs: {files: [GNUmakefile]}'],
      ['dependency env', 'env: {MODE: ci}', 'env: {MODE: dev}'],
      ['dependency outputs', 'outputs: {dirs: [build], files: [stamp]}', 'outputs: {dirs: [out], files: [stamp]}'],
      ['service block', 'command: [pg_ctl, start]', 'command: [pg_ctl, restart]'],
      ['sandbox.run.before', 'run: {before: make check}', 'run: {before: make lint}'],
      ['sandbox.network.dependencies', 'dependencies: {allow: [proxy.golang.org:443]}', 'dependencies: {allow: [proxy.golang.org:80]}'],
      ['sandbox.network.services', 'services: {allow: [ghcr.io:443]}', 'services: {}'],
      ['sandbox.network.execution', 'execution: {allow: [api.github.com:443]}', 'execution: {allow: [uploads.github.com:443]}'],
    ]
    const base = compile(FULL)

    for (const [key, from, to] of variants) {
      it(`changes with ${key}`, () => {
        expect(FULL).to.contain(from)
        expect(compile(FULL.replace(from, to)).hash).to.not.equal(base.hash)
      })
    }

    it('changes when any key is left out, and differs from a policy without them', () => {
      const hashes = new Set([DEFAULT_POLICY.hash, base.hash])
      for (const line of ['  resources: {vcpus: 4, memory: 8GiB, disk: 16GiB}\n', '  docker: {required: true}\n', '  run: {before: make check}\n']) {
        hashes.add(compile(FULL.replace(line, '')).hash)
      }
      expect(hashes.size).to.equal(5)
    })

    it('is the same for the same setting written differently', () => {
      const same: [string, string][] = [
        ['docker: {required: true}', 'services: {docker: {required: true}}'],
        ['memory: 8GiB', 'memory: 8589934592'],
        ['memory: 8GiB', 'memory: "8192 MiB"'],
        ['disk: 16GiB', 'disk: 16g'],
        ['inputs: {files: [Makefile]}', 'inputs: {files: [./Makefile, Makefile]}'],
        ['outputs: {dirs: [build], files: [stamp]}', 'outputs: {dirs: [/src/build/], files: ["${WORKSPACE}/stamp"]}'],
        ['run: {before: make check}', 'run: {before: "  make check\\n"}'],
      ]
      // The sandbox.services mapping form cannot sit beside service blocks: compare without them.
      const withoutServices = FULL.replace(/ {2}services:\n {4}- name: db\n(?: {6}.*\n)+/, '')
      for (const [from, to] of same) {
        const text = from.startsWith('docker') ? withoutServices : FULL
        expect(compile(text.replace(from, to)).hash, to).to.equal(compile(text).hash)
      }
    })
  })

  it('compiles every example policy in docs/policy.md', () => {
    const docs = readFileSync(new URL('../../docs/policy.md', import.meta.url), 'utf8')
    const examples = [...docs.matchAll(/```yaml\n([\s\S]*?)```/g)].map((match) => match[1]!)
    expect(examples).to.have.length.at.least(2)
    for (const example of examples) expect(() => compile(example), example).to.not.throw()
  })

  describe('what the Go tool accepts as a boolean or a size', () => {
    it('reads yes/no, on/off and y/n as booleans, as its YAML decoder does for a boolean field', () => {
      for (const [word, value] of [['yes', true], ['On', true], ['Y', true], ['no', false], ['OFF', false], ['n', false]] as const) {
        expect(compile(`version: 1\nsandbox:\n  docker:\n    required: ${word}\n`).services?.docker?.required, word).to.equal(value)
      }
    })

    it('parses byte sizes exactly, refusing fractions of a byte and sizes past 2^53', () => {
      expect(parseByteSize('1.5GiB')).to.equal(1_610_612_736)
      expect(parseByteSize('500MB')).to.equal(500_000_000)
      expect(parseByteSize(' 4096 mib ')).to.equal(4_294_967_296)
      expect(parseByteSize(1024)).to.equal(1024)
      expect(() => parseByteSize('0.3KB')).to.not.throw()
      expect(() => parseByteSize('0.0001KB')).to.throw(/is not a whole number of bytes/)
      expect(() => parseByteSize('8 PiB')).to.throw(/is more than 9007199254740991 bytes/)
      expect(() => parseByteSize('-1GiB')).to.throw(/is not a byte size/)
    })
  })

  describe('a compiled policy sent back to the daemon', () => {
    for (const name of readdirSync(VALID).filter((file) => file.endsWith('.yaml'))) {
      it(`${name} recompiles to itself`, () => {
        const policy = compilePolicyBytes(name, readFileSync(`${VALID}${name}`))
        expect(recompilePolicy(JSON.parse(JSON.stringify(policy)))).to.deep.equal(policy)
      })
    }

    it('refuses a field it does not know rather than dropping it', () => {
      const sent = JSON.parse(JSON.stringify(DEFAULT_POLICY)) as Record<string, unknown>
      expect(() => recompilePolicy({...sent, gpu: {required: true}})).to.throw(CleanroomError, /^policy\.gpu is not a field of a compiled policy/)
      expect(() => recompilePolicy({...sent, resources: {memory: '8GiB'}})).to.throw(CleanroomError, /^policy\.resources\.memory is not a field of a compiled policy/)
      expect(() => recompilePolicy({...sent, run: {before: ['make']}})).to.throw(CleanroomError, /^policy\.run must be/)
    })
  })

  describe('agent hosts added to a policy with stage-local egress', () => {
    it('go to the execution stage, where the agent runs', () => {
      const policy = withAdditionalAllow(compile(FULL), [{host: 'api.openai.com', ports: [443]}])
      expect(policy.allow).to.deep.equal([])
      expect(policy.network_stages?.execution?.allow).to.deep.equal([{host: 'api.github.com', ports: [443]}, {host: 'api.openai.com', ports: [443]}])
      expect(policy.network_stages?.dependencies).to.deep.equal(compile(FULL).network_stages?.dependencies)
    })
  })

  describe('capabilities', () => {
    const none = {} as Capabilities

    it('names each key a policy needs a capability for', () => {
      expect(neededCapabilities(compile(FULL))).to.deep.equal([
        {capability: 'network.default_deny', keys: ['sandbox.network.default']},
        {capability: 'resources.cpu', keys: ['sandbox.resources.vcpus']},
        {capability: 'resources.memory', keys: ['sandbox.resources.memory']},
        {capability: 'resources.disk', keys: ['sandbox.resources.disk']},
        {capability: 'services.docker', keys: ['sandbox.docker.required']},
        {
          capability: 'policy.stages',
          keys: ['sandbox.dependencies', 'sandbox.services', 'repository.network', 'sandbox.network.dependencies', 'sandbox.network.services', 'sandbox.network.execution'],
        },
        {capability: 'policy.run_before', keys: ['sandbox.run.before']},
        {capability: 'repository.checkout', keys: ['repository']},
        {capability: 'expose.https', keys: ['expose.https']},
      ])
    })

    it('needs nothing more for docker: {required: false}', () => {
      expect(missingCapabilities(compile('version: 1\nsandbox:\n  docker: {required: false}\n'), {...none, 'network.default_deny': true})).to.deep.equal([])
    })

    it('refuses at launch with backend_capability_mismatch naming capability and key, and says what to change', () => {
      const policy = compile('version: 1\nsandbox:\n  resources: {memory: 2GiB}\n')
      const error = (() => {
        try {
          requireCapabilities('linux-ns', policy, {...none, 'network.default_deny': true})
        } catch (error_) {
          return error_ as CleanroomError
        }
        throw new Error('expected a refusal')
      })()
      expect(error.code).to.equal('backend_capability_mismatch')
      expect(error.message).to.equal('backend linux-ns cannot enforce this policy: it lacks resources.memory (sandbox.resources.memory)')
      expect(error.details).to.deep.equal({backend: 'linux-ns', missing: ['resources.memory'], keys: {'resources.memory': ['sandbox.resources.memory']}})
      expect(error.suggestions[0]).to.match(/^Remove sandbox\.resources\.memory from cleanroom\.yaml/)
    })
  })
})
