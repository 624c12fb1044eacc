import {expect} from 'chai'

import {parseRuntimeConfigBytes} from '../../src/config/parse.js'
import {CleanroomError} from '../../src/errors/index.js'
import {compilePolicyBytes} from '../../src/policy/compile.js'
import {POLICY_LIMITS} from '../../src/policy/schema.js'

/** The issue lines of a policy that must be refused. */
function refused(text: string | Buffer): string[] {
  try {
    compilePolicyBytes('cleanroom.yaml', Buffer.from(text))
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'policy_invalid')
    return (error as CleanroomError).message.split('\n').slice(1)
  }
  throw new Error('expected the policy to be refused')
}

/** CPU milliseconds `run` took: what a big or hostile file costs, whatever else the machine is doing. */
function cpuMs(run: () => unknown): number {
  const start = process.cpuUsage()
  try {
    run()
  } catch {
    // The outcome is checked separately.
  }
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1000
}

const rules = (count: number) => ['version: 1', 'sandbox:', '  network:', '    allow:', ...Array.from({length: count}, (_, i) => `      - h${i}.example.com:443`), ''].join('\n')

describe('bounded parsing of policies and runtime configs', () => {
  describe('size, lines, values, nesting', () => {
    it('refuses a file over 1 MiB at line 1 without parsing it', () => {
      const text = `version: 1\n#${'x'.repeat(1 << 20)}\n`
      expect(refused(text)).to.deep.equal(['cleanroom.yaml:1:1 is 1.0 MiB (1048589 bytes): a policy may be at most 1.0 MiB (1048576 bytes)'])
      expect(cpuMs(() => refused(`${text}${'y'.repeat(9 << 20)}`)), 'a 10 MiB file').to.be.below(200)
    })

    it('stops at 20,000 lines, at the line that goes over', () => {
      expect(refused(`version: 1\n${'\n'.repeat(20_000)}`)).to.deep.equal(['cleanroom.yaml:20001:1 has more than 20000 lines: a policy may have at most 20000'])
    })

    it('stops at 20,000 keys and values, where the file goes over', () => {
      const lines = refused(`version: 1\nsandbox:\n  unknown: [${Array.from({length: 30_000}, (_, i) => i).join(', ')}]\n`)
      expect(lines).to.have.length(1)
      expect(lines[0]).to.match(/^cleanroom\.yaml:3:\d+ has more than 20000 keys and values: a policy may have at most 20000$/)
    })

    it('stops at 32 levels of nesting, flow or block, at the level that goes over', () => {
      expect(refused('['.repeat(1 << 20))).to.deep.equal(['cleanroom.yaml:1:34 is nested more than 32 levels deep: a policy may nest at most 32'])
      const block = Array.from({length: 40}, (_, i) => `${'  '.repeat(i)}k${i}:`).join('\n')
      expect(refused(block)[0]).to.match(/^cleanroom\.yaml:3[34]:\d+ is nested more than 32 levels deep/)
      expect(cpuMs(() => refused('['.repeat(1 << 20))), '1 MiB of "["').to.be.below(100)
    })

    it('refuses more than 1,024 rules in all, before reading any of them', () => {
      expect(refused(rules(POLICY_LIMITS.maxRules + 1))).to.deep.equal([
        'cleanroom.yaml:5:7 sandbox.network.allow: has 1025 rules, more than the 1024 a policy may have in all (allow, deny and stage allow lists together)',
      ])
      expect(() => compilePolicyBytes('cleanroom.yaml', Buffer.from(rules(POLICY_LIMITS.maxRules)))).to.not.throw()
    })

    it('lists at most 50 problems and counts the rest', () => {
      const lines = refused(`version: 1\n${Array.from({length: 5000}, (_, i) => `k${i}: 1`).join('\n')}\n`)
      expect(lines).to.have.length(51)
      expect(lines[0]).to.equal('cleanroom.yaml:2:1 k0: unknown key (expected one of: version, repository, sandbox, expose)')
      expect(lines[50]).to.equal('… and 4950 more problems (fix the ones above first)')
    })

    it('checks 19,000 unknown keys in linear time', () => {
      const text = `version: 1\n${Array.from({length: 19_000}, (_, i) => `k${i}: 1`).join('\n')}\n`
      // Quadratic duplicate-key or position lookups take tens of seconds here.
      expect(cpuMs(() => refused(text))).to.be.below(3000)
    })
  })

  describe('aliases', () => {
    const bomb = ['a0: &a0 [x, x, x, x, x, x, x, x, x]', ...Array.from({length: 8}, (_, i) => `a${i + 1}: &a${i + 1} [${Array.from({length: 9}, () => `*a${i}`).join(', ')}]`)].join('\n')

    it('refuses an alias bomb at the alias that goes over, in milliseconds', () => {
      const lines = refused(`version: 1\n${bomb}\n`)
      expect(lines[0]).to.match(/^cleanroom\.yaml:\d+:\d+ has more than 20000 keys and values once its aliases are expanded: a policy may have at most 20000$/)
      expect(cpuMs(() => refused(`version: 1\n${bomb}\n`))).to.be.below(200)
    })

    it('refuses more than 100 aliases', () => {
      const text = `version: 1\nx: &x 1\nmany: [${Array.from({length: 101}, () => '*x').join(', ')}]\n`
      expect(refused(text)).to.deep.equal(['cleanroom.yaml:3:408 has more than 100 aliases (*name): a policy may have at most 100'])
    })

    it('names an alias with no anchor, and one inside its own anchor, with their positions', () => {
      expect(refused('version: 1\nsandbox: *nowhere\n')).to.deep.equal(['cleanroom.yaml:2:10 alias *nowhere has no anchor &nowhere before it'])
      expect(refused('version: 1\nloop: &loop [*loop]\n')).to.deep.equal(['cleanroom.yaml:2:14 alias *loop refers to the value it is part of'])
    })

    it('accepts aliases within the limits, read as the value they name', () => {
      const policy = compilePolicyBytes('cleanroom.yaml', Buffer.from('version: 1\nsandbox:\n  network:\n    allow: [{host: a.example, ports: &web [80, 443]}, {host: b.example, ports: *web}]\n'))
      expect(policy.allow).to.deep.equal([{host: 'a.example', ports: [80, 443]}, {host: 'b.example', ports: [80, 443]}])
    })
  })

  describe('bytes', () => {
    it('refuses invalid UTF-8 at its line and column', () => {
      expect(refused(Buffer.concat([Buffer.from('version: 1\nsandbox:\n  x'), Buffer.from([0xc3, 0x28])]))).to.deep.equal([
        'cleanroom.yaml:3:4 is not valid UTF-8 (byte 0xc3 at offset 23): save it as UTF-8',
      ])
      for (const bad of [[0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xff]]) {
        expect(refused(Buffer.concat([Buffer.from('version: 1\n'), Buffer.from(bad)]))[0]).to.match(/^cleanroom\.yaml:2:1 is not valid UTF-8/)
      }
    })

    it('refuses NUL and other control characters, raw or escaped', () => {
      expect(refused(Buffer.from('version: 1\nsandbox: a\0b\n'))).to.deep.equal(['cleanroom.yaml:2:11 contains the control character U+0000 (NUL): remove it'])
      expect(refused('version: 1\nsandbox:\n  run:\n    before: "make \\e[31m"\n')).to.deep.equal(['cleanroom.yaml:4:13 contains the control character U+001B: remove it'])
    })

    it('reads a UTF-8 byte order mark at the start, and refuses one later or a UTF-16 file', () => {
      expect(compilePolicyBytes('cleanroom.yaml', Buffer.from('\uFEFFversion: 1\n')).version).to.equal(1)
      expect(refused(Buffer.from('version: 1\n\uFEFFsandbox: {}\n'))).to.deep.equal(['cleanroom.yaml:2:1 has a byte order mark (U+FEFF) after its start: remove it'])
      expect(refused(Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from('version: 1\n', 'utf16le')]))).to.deep.equal([
        'cleanroom.yaml:1:1 is UTF-16 (it starts with a UTF-16 byte order mark): save it as UTF-8',
      ])
    })
  })

  describe('keys and documents', () => {
    it('refuses keys that become the same key ("1" and 1) and keys that are collections', () => {
      expect(refused('version: 1\n"1": a\n1: b\n')).to.deep.equal(['cleanroom.yaml:3:1 Map keys must be unique'])
      expect(refused('version: 1\n? [a, b]\n: c\n')).to.deep.equal(['cleanroom.yaml:2:3 a key must be a plain value (text or a number), not a collection or an alias'])
    })

    it('refuses a second document', () => {
      expect(refused('version: 1\n---\nversion: 1\n')).to.deep.equal(['cleanroom.yaml:2:1 is more than one YAML document: a policy is one document (remove the second "---")'])
    })
  })

  describe('the runtime config', () => {
    it('has the same limits, named for a runtime config', () => {
      const invalid = (bytes: Uint8Array | number): string[] => {
        try {
          parseRuntimeConfigBytes('/x/config.yaml', bytes)
        } catch (error) {
          expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'config_invalid')
          return (error as CleanroomError).message.split('\n').slice(1)
        }
        throw new Error('expected the config to be refused')
      }
      expect(invalid(12 << 20)).to.deep.equal(['/x/config.yaml:1:1 is 12.0 MiB (12582912 bytes): a runtime config may be at most 1.0 MiB (1048576 bytes)'])
      expect(invalid(Buffer.from('agents: *x\n'))).to.deep.equal(['/x/config.yaml:1:9 alias *x has no anchor &x before it'])
      expect(invalid(Buffer.from(`default_backend: ${'['.repeat(100)}`))[0]).to.match(/^\/x\/config\.yaml:1:\d+ is nested more than 32 levels deep: a runtime config may nest at most 32$/)
    })
  })
})
