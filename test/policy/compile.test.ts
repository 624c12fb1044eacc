import {expect} from 'chai'
import {readdirSync, readFileSync} from 'node:fs'
import {fileURLToPath} from 'node:url'

import {CleanroomError} from '../../src/errors/index.js'
import {compilePolicy, DEFAULT_POLICY, policyHash, withAdditionalAllow} from '../../src/policy/compile.js'
import type {CompiledPolicy} from '../../src/policy/schema.js'
import {YamlFile} from '../../src/util/yaml-file.js'

const FIXTURES = fileURLToPath(new URL('../fixtures/policy/', import.meta.url))

function compile(text: string, file = 'cleanroom.yaml'): CompiledPolicy {
  return compilePolicy(new YamlFile(file, text))
}

/** The issue lines of a policy that must be invalid. */
function issues(text: string, file = 'cleanroom.yaml'): string[] {
  try {
    compile(text, file)
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError)
    expect((error as CleanroomError).code).to.equal('policy_invalid')
    const [heading, ...lines] = (error as CleanroomError).message.split('\n')
    expect(heading).to.equal('policy invalid:')
    return lines
  }
  throw new Error('expected the policy to be invalid')
}

function fixtures(dir: string): string[] {
  return readdirSync(`${FIXTURES}${dir}`)
    .filter((name) => name.endsWith('.yaml'))
    .sort()
}

function hashOf(text: string): string {
  return compile(text).hash
}

describe('policy compilation', () => {
  describe('valid corpus (test/fixtures/policy/valid)', () => {
    for (const name of fixtures('valid')) {
      it(`${name} compiles to ${name.replace('.yaml', '.json')}`, () => {
        const policy = compile(readFileSync(`${FIXTURES}valid/${name}`, 'utf8'), name)
        const expected: unknown = JSON.parse(readFileSync(`${FIXTURES}valid/${name.replace('.yaml', '.json')}`, 'utf8'))
        expect(JSON.parse(JSON.stringify(policy))).to.deep.equal(expected)
      })
    }
  })

  describe('invalid corpus (test/fixtures/policy/invalid)', () => {
    for (const name of fixtures('invalid')) {
      it(`${name} reports exactly ${name.replace('.yaml', '.errors')}`, () => {
        const expected = readFileSync(`${FIXTURES}invalid/${name.replace('.yaml', '.errors')}`, 'utf8').trimEnd().split('\n')
        expect(issues(readFileSync(`${FIXTURES}invalid/${name}`, 'utf8'), name)).to.deep.equal(expected)
      })
    }
  })

  describe('error messages', () => {
    it('points at a bad port with line and column', () => {
      const text = ['version: 1', 'sandbox:', '  network:', '    allow:', '      - {host: api.github.com, ports: [443]}', '      - host: registry.npmjs.org', '        ports: [443, 70000]'].join('\n')
      expect(issues(text)).to.deep.equal(['cleanroom.yaml:7:22 sandbox.network.allow[1].ports[1]: 70000 is not a port (1-65535)'])
    })

    it('points at an unknown key itself', () => {
      expect(issues('version: 1\nsandbox:\n  netwrok: {}\n')).to.deep.equal([
        'cleanroom.yaml:3:3 sandbox.netwrok: unknown key (expected one of: image, resources, docker, services, dependencies, run, network, credentials)',
      ])
    })

    it('refuses more than 64 credential requests, and a route name over 64 characters', () => {
      const many = Array.from({length: 65}, (_, i) => `r${i}`).join(', ')
      expect(issues(`version: 1\nsandbox:\n  credentials: [${many}]\n`)).to.deep.equal(['cleanroom.yaml:3:16 sandbox.credentials: asks for 65 credential routes; at most 64'])
      expect(issues(`version: 1\nsandbox:\n  credentials: [${'a'.repeat(65)}]\n`)).to.deep.equal([
        'cleanroom.yaml:3:17 sandbox.credentials[0]: must be a route name (lower-case letters, digits and -, starting with a letter; at most 64)',
      ])
    })

    it('refuses a default other than deny', () => {
      expect(issues('version: 1\nsandbox:\n  network:\n    default: allow\n')).to.deep.equal([
        'cleanroom.yaml:4:14 sandbox.network.default: unsupported value "allow": cleanroom requires deny-by-default',
      ])
    })

    it('refuses an image that is not pinned by digest', () => {
      expect(issues('version: 1\nsandbox:\n  image:\n    ref: alpine:3.20\n')).to.deep.equal([
        'cleanroom.yaml:4:10 sandbox.image.ref: "alpine:3.20" is not digest-pinned (expected repo/image@sha256:<digest>)',
      ])
    })

    it('reports a bad host, a bad CIDR and an octal IP in one run', () => {
      const text = [
        'version: 1',
        'sandbox:',
        '  network:',
        '    allow:',
        '      - {host: "exa mple.com", ports: [443]}',
        '      - {host: 10.0.0.1/8, ports: [443]}',
        '      - "010.0.0.1:443"',
      ].join('\n')
      expect(issues(text)).to.deep.equal([
        'cleanroom.yaml:5:16 sandbox.network.allow[0].host: "exa mple.com" is not a valid host name (a host name has only letters, digits, "-" and ".")',
        'cleanroom.yaml:6:16 sandbox.network.allow[1].host: "10.0.0.1/8" has host bits set: write 10.0.0.0/8, or 10.0.0.1 for the one address',
        'cleanroom.yaml:7:9 sandbox.network.allow[2]: "010.0.0.1" is not a canonical IPv4 address: write four decimal numbers without leading zeros, e.g. 10.0.0.1 (octal, hex and short forms are ambiguous)',
      ])
    })

    it('lists the issues in file order with the fix in the suggestions and the issues in details', () => {
      try {
        compile('sandbox:\n  network:\n    default: allow\nextra: 1\n')
        expect.fail('expected policy_invalid')
      } catch (error) {
        const invalid = error as CleanroomError
        expect(invalid.exitCode).to.equal(2)
        expect(invalid.message.split('\n').slice(1)).to.deep.equal([
          'cleanroom.yaml:1:1 version: is required: add "version: 1" at the top',
          'cleanroom.yaml:3:14 sandbox.network.default: unsupported value "allow": cleanroom requires deny-by-default',
          'cleanroom.yaml:4:1 extra: unknown key (expected one of: version, repository, sandbox, expose)',
        ])
        expect(invalid.suggestions).to.deep.equal(['Fix the lines above in cleanroom.yaml, then check again with: cleanroom policy validate'])
        expect((invalid.details as {issues: unknown[]}).issues).to.have.length(3)
      }
    })
  })

  describe('normalisation', () => {
    it('merges rules per host, unites and sorts ports, and sorts rules by host', () => {
      const policy = compile(
        [
          'version: 1',
          'sandbox:',
          '  network:',
          '    allow:',
          '      - {host: b.example, ports: [443]}',
          '      - {host: A.example., ports: [8080, 443]}',
          '      - a.example:80',
          '      - {host: a.example, ports: [443], reason: the API}',
          '      - {host: a.example, ports: [443], reason: its docs}',
          '    deny:',
          '      - x.example:22',
          '      - x.example',
          '      - y.example:25',
          '      - y.example:22',
        ].join('\n'),
      )
      expect(policy.allow).to.deep.equal([
        {host: 'a.example', ports: [80, 443, 8080], reason: 'the API; its docs'},
        {host: 'b.example', ports: [443]},
      ])
      expect(policy.deny).to.deep.equal([{host: 'x.example'}, {host: 'y.example', ports: [22, 25]}])
    })

    it('produces a deeply frozen policy', () => {
      const policy = compile('version: 1\nsandbox:\n  network:\n    allow: ["a.example:443"]\n')
      expect(Object.isFrozen(policy)).to.equal(true)
      expect(Object.isFrozen(policy.allow)).to.equal(true)
      expect(Object.isFrozen(policy.allow[0])).to.equal(true)
      expect(Object.isFrozen(policy.allow[0]?.ports)).to.equal(true)
      expect(() => (policy.allow[0]?.ports as number[]).push(22)).to.throw(TypeError)
    })
  })

  describe('hash', () => {
    const base = [
      'version: 1',
      'sandbox:',
      '  network:',
      '    default: deny',
      '    allow:',
      '      - {host: api.github.com, ports: [443]}',
      '      - {host: registry.npmjs.org, ports: [80, 443]}',
      '    deny:',
      '      - 169.254.169.254',
    ].join('\n')

    it('is the SHA-256 of the canonical JSON and excludes itself', () => {
      const policy = compile(base)
      expect(policy.hash).to.match(/^[\da-f]{64}$/)
      expect(policyHash(policy)).to.equal(policy.hash)
    })

    it('is stable across key order, whitespace, comments, rule order, port order and host spelling', () => {
      const variants = [
        [
          '# the same policy, written differently',
          'sandbox:',
          '  network:',
          '    deny: ["169.254.169.254"]',
          '    allow:',
          '      - ports: [443, 80, 443]   # npm',
          '        host: Registry.NPMjs.org.',
          '      - "API.github.com:443"',
          '',
          'version: 1',
        ].join('\n'),
        base.replace('    default: deny\n', ''),
        base.replace('default: deny', 'default: " Deny "'),
        base.replace('{host: api.github.com, ports: [443]}', '{host: api.github.com, ports: [443], reason: the GitHub API}'),
        base.replace('{host: registry.npmjs.org, ports: [80, 443]}', 'registry.npmjs.org:443\n      - registry.npmjs.org:80'),
      ]
      for (const variant of variants) expect(hashOf(variant), variant).to.equal(hashOf(base))
    })

    it('changes when what is allowed or denied changes', () => {
      const changed = [
        base.replace('[80, 443]', '[443]'),
        base.replace('api.github.com', 'uploads.github.com'),
        base.replace('      - 169.254.169.254', '      - 169.254.169.254:80'),
        `${base}\n      - evil.example`,
        base.replace('sandbox:\n', `sandbox:\n  image:\n    ref: alpine@sha256:${'a'.repeat(64)}\n`),
      ]
      for (const variant of changed) expect(hashOf(variant), variant).to.not.equal(hashOf(base))
    })
  })

  describe('the default policy', () => {
    it('allows nothing, names no image and has the hash of an empty version 1 policy', () => {
      expect(DEFAULT_POLICY).to.deep.equal({
        version: 1,
        network_default: 'deny',
        allow: [],
        deny: [],
        hash: compile('version: 1\n').hash,
      })
      expect(Object.isFrozen(DEFAULT_POLICY.allow)).to.equal(true)
    })
  })

  describe('withAdditionalAllow', () => {
    const repo = compile(
      ['version: 1', 'sandbox:', '  network:', '    allow:', '      - {host: api.github.com, ports: [443], reason: git}', '    deny:', '      - evil.example'].join('\n'),
    )

    it('merges the new rules in, normalised, and recomputes the hash', () => {
      const policy = withAdditionalAllow(repo, [
        {host: 'API.OpenAI.com.', ports: [443], reason: 'the Codex API'},
        {host: 'api.github.com', ports: [80, 443]},
      ])
      expect(policy.allow).to.deep.equal([
        {host: 'api.github.com', ports: [80, 443], reason: 'git'},
        {host: 'api.openai.com', ports: [443], reason: 'the Codex API'},
      ])
      expect(policy.deny).to.deep.equal(repo.deny)
      expect(policy.hash).to.equal(policyHash(policy))
      expect(policy.hash).to.not.equal(repo.hash)
      expect(Object.isFrozen(policy.allow)).to.equal(true)
      expect(repo.allow, 'the original is untouched').to.have.length(1)
    })

    it('gives the same policy as writing the rules in the file', () => {
      const inFile = compile(
        ['version: 1', 'sandbox:', '  network:', '    allow:', '      - {host: api.github.com, ports: [443]}', '      - api.openai.com:443', '    deny:', '      - evil.example'].join('\n'),
      )
      expect(withAdditionalAllow(repo, [{host: 'api.openai.com', ports: [443]}]).hash).to.equal(inFile.hash)
    })

    it('adds to the default policy', () => {
      const policy = withAdditionalAllow(DEFAULT_POLICY, [{host: '*.anthropic.com', ports: [443]}])
      expect(policy.allow).to.deep.equal([{host: '*.anthropic.com', ports: [443]}])
      expect(DEFAULT_POLICY.allow).to.deep.equal([])
    })

    it('refuses invalid rules, naming each problem', () => {
      expect(() => withAdditionalAllow(repo, [{host: 'a b', ports: [443]}, {host: 'ok.example', ports: [0]}, {host: 'ok.example', ports: []}]))
        .to.throw(CleanroomError)
        .with.property(
          'message',
          [
            'cannot add allow rules to the policy:',
            'allow rule 0 host: "a b" is not a valid host name (a host name has only letters, digits, "-" and ".")',
            'allow rule 1 ports: 0 is not a port (1-65535)',
            'allow rule 2 ports: at least one port is required',
          ].join('\n'),
        )
    })
  })
})
