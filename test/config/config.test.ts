import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {completeAgentSpec} from '../../src/agents/validate.js'
import {loadRuntimeConfig} from '../../src/config/load.js'
import {parseRuntimeConfigText} from '../../src/config/parse.js'
import {defaultConfigPath} from '../../src/config/paths.js'
import {DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import {renderConfigTemplate} from '../../src/config/template.js'
import {writeRuntimeConfig} from '../../src/config/write.js'
import {CleanroomError} from '../../src/errors/index.js'
import {tempDirs} from '../helpers/tmp.js'

function invalidLines(text: string): string[] {
  try {
    parseRuntimeConfigText('/x/config.yaml', text)
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError)
    expect((error as CleanroomError).code).to.equal('config_invalid')
    return (error as CleanroomError).message.split('\n').slice(1)
  }
  throw new Error('expected the config to be invalid')
}

describe('runtime config', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  describe('location', () => {
    it('uses $XDG_CONFIG_HOME when it is absolute', () => {
      expect(defaultConfigPath({XDG_CONFIG_HOME: '/xdg', HOME: '/home/u'})).to.equal('/xdg/cleanroom/config.yaml')
    })

    it('falls back to ~/.config when XDG_CONFIG_HOME is unset or relative', () => {
      expect(defaultConfigPath({HOME: '/home/u'})).to.equal('/home/u/.config/cleanroom/config.yaml')
      expect(defaultConfigPath({XDG_CONFIG_HOME: 'rel', HOME: '/home/u'})).to.equal('/home/u/.config/cleanroom/config.yaml')
    })
  })

  describe('loading', () => {
    it('treats a missing file as the defaults', async () => {
      const dir = await dirs.make()
      const loaded = await loadRuntimeConfig(join(dir, 'nope.yaml'))
      expect(loaded.exists).to.equal(false)
      expect(loaded.config).to.deep.equal(DEFAULT_RUNTIME_CONFIG)
    })

    it('treats an empty file as the defaults', () => {
      expect(parseRuntimeConfigText('/x/config.yaml', '# only a comment\n')).to.deep.equal(DEFAULT_RUNTIME_CONFIG)
    })

    it('reads every setting', () => {
      const config = parseRuntimeConfigText(
        '/x/config.yaml',
        [
          'default_backend: gvisor',
          'backends:',
          '  linux-ns:',
          '    bwrap_path: /opt/bwrap/bin/bwrap',
          '  gvisor:',
          '    runsc_path: runsc',
          '    platform: ptrace',
          'egress:',
          '  max_connections_per_sandbox: 64',
          'agents:',
          '  mine:',
          '    command: my-agent --fast',
          '    credentials:',
          '      - source: ~/.mine/token',
          '    network:',
          '      - {host: API.Mine.Example., ports: [443, 443, 80], reason: its API}',
          '    env: {MINE_MODE: sandbox}',
        ].join('\n'),
      )
      expect(config.default_backend).to.equal('gvisor')
      expect(config.backends['linux-ns'].bwrap_path).to.equal('/opt/bwrap/bin/bwrap')
      expect(config.backends.gvisor.platform).to.equal('ptrace')
      expect(config.egress.max_connections_per_sandbox).to.equal(64)
      expect(config.agents.mine).to.deep.equal({
        command: 'my-agent --fast',
        credentials: [{source: '~/.mine/token', target: '~/.mine/token'}],
        network: [{host: 'api.mine.example', ports: [80, 443], reason: 'its API'}],
        env: {MINE_MODE: 'sandbox'},
      })
    })

    it('reports an unknown key with its line and column', () => {
      expect(invalidLines('default_backend: linux-ns\nbackends:\n  linux-ns:\n    bwrap: /usr/bin/bwrap\n')).to.deep.equal([
        '/x/config.yaml:4:5 backends.linux-ns.bwrap: unknown key (expected one of: bwrap_path, resources)',
      ])
    })

    it('reports every problem, not only the first', () => {
      const lines = invalidLines(
        [
          'default_backend: firecracker',
          'colour: blue',
          'agents:',
          '  Bad_Name: {command: x}',
          '  ok:',
          '    credentials:',
          '      - {source: ~/.ok/token, target: ../../etc/passwd}',
          '    network:',
          '      - {host: api.ok.example, ports: [70000]}',
        ].join('\n'),
      )
      expect(lines).to.have.length(5)
      expect(lines[0]).to.equal('/x/config.yaml:1:18 default_backend: unsupported value "firecracker" (expected linux-ns or gvisor)')
      expect(lines[1]).to.equal('/x/config.yaml:2:1 colour: unknown key (expected one of: default_backend, backends, egress, agents, registries, credentials)')
      expect(lines[2]).to.match(/^\/x\/config\.yaml:4:3 agents\.Bad_Name: "Bad_Name" is not a valid agent name/)
      expect(lines[3]).to.match(/^\/x\/config\.yaml:7:39 agents\.ok\.credentials\[0\]\.target: /)
      expect(lines[4]).to.equal('/x/config.yaml:9:40 agents.ok.network[0].ports[0]: 70000 is not a port (1-65535)')
    })

    it('refuses a connection limit that is not a whole number from 1 to 1000000, and unknown egress keys', () => {
      for (const bad of ['0', '-5', '2.5', '"1024"', '1000001']) {
        expect(invalidLines(`egress:\n  max_connections_per_sandbox: ${bad}\n`)).to.deep.equal([
          `/x/config.yaml:2:32 egress.max_connections_per_sandbox: must be a whole number from 1 to 1000000`,
        ])
      }
      expect(invalidLines('egress:\n  max_connections: 5\n')).to.deep.equal(['/x/config.yaml:2:3 egress.max_connections: unknown key (expected one of: max_connections_per_sandbox, audit_failure)'])
    })

    it('takes egress.audit_failure deny or allow, deny when left out, and nothing else', () => {
      expect(DEFAULT_RUNTIME_CONFIG.egress.audit_failure).to.equal('deny')
      expect(parseRuntimeConfigText('/x/config.yaml', 'egress:\n  audit_failure: allow\n').egress.audit_failure).to.equal('allow')
      expect(invalidLines('egress:\n  audit_failure: maybe\n')).to.deep.equal(['/x/config.yaml:2:18 egress.audit_failure: unsupported value "maybe" (expected deny or allow)'])
    })

    it('reports YAML syntax errors with their position', () => {
      const lines = invalidLines('default_backend: linux-ns\nbackends: [\n')
      expect(lines[0]).to.match(/^\/x\/config\.yaml:\d+:\d+ /)
    })

    it('rejects a reserved agent name', () => {
      expect(invalidLines('agents:\n  list: {command: x}\n')[0]).to.equal(
        '/x/config.yaml:2:3 agents.list: "list" is reserved by the cleanroom agent command',
      )
    })

    it('takes an npm package name for an agent, and refuses one with a version or a space', () => {
      const config = parseRuntimeConfigText('/x/config.yaml', 'agents:\n  acme: {command: acme, package: "@acme/code"}\n')
      expect(config.agents.acme).to.deep.include({command: 'acme', package: '@acme/code'})
      for (const bad of ['"@acme/code@latest"', '"acme code"', '"../x"', 'ACME']) {
        expect(invalidLines(`agents:\n  acme: {package: ${bad}}\n`)[0]).to.match(/agents\.acme\.package: must be an npm package name without a version/)
      }
    })

    it('rejects a directory in place of the file', async () => {
      const dir = await dirs.make()
      const error = await loadRuntimeConfig(dir).catch((error_: unknown) => error_)
      expect((error as CleanroomError).code).to.equal('config_invalid')
      expect((error as CleanroomError).message).to.contain('is a directory')
    })

    it('refuses a fifo or a file over 1 MiB before reading it, and names the line of an alias bomb', async () => {
      const dir = await dirs.make()
      const fifo = join(dir, 'fifo.yaml')
      await execa('mkfifo', [fifo])
      const notAFile = (await loadRuntimeConfig(fifo).catch((error_: unknown) => error_)) as CleanroomError
      expect(notAFile).to.deep.include({code: 'config_invalid', message: `runtime config ${fifo} is a fifo, not a file`})
      const big = join(dir, 'big.yaml')
      await execa('truncate', ['-s', '2G', big])
      const tooLarge = (await loadRuntimeConfig(big).catch((error_: unknown) => error_)) as CleanroomError
      expect(tooLarge.message).to.equal(`runtime config invalid:\n${big}:1:1 is 2.0 GiB (2147483648 bytes): a runtime config may be at most 1.0 MiB (1048576 bytes)`)
      const bomb = join(dir, 'bomb.yaml')
      await writeFile(bomb, ['a: &a [x, x, x, x, x, x, x, x, x, x]', ...Array.from({length: 6}, (_, i) => `${'bcdefg'[i]}: &${'bcdefg'[i]} [${Array.from({length: 10}, () => `*${'abcdef'[i]}`).join(', ')}]`)].join('\n'))
      const expanded = (await loadRuntimeConfig(bomb).catch((error_: unknown) => error_)) as CleanroomError
      expect(expanded.message).to.match(new RegExp(`^runtime config invalid:\\n${bomb}:5:8 has more than 20000 keys and values once its aliases are expanded`))
    })
  })

  describe('the template written by config init', () => {
    const codex = completeAgentSpec('codex', {
      description: 'OpenAI Codex CLI',
      command: 'codex',
      credentials: [{source: '~/.codex/auth.json', target: '~/.codex/auth.json'}],
      network: [{host: 'api.openai.com', ports: [443], reason: 'API'}],
    })

    it('loads back as exactly the defaults', () => {
      expect(parseRuntimeConfigText('/x/config.yaml', renderConfigTemplate([codex]))).to.deep.equal(DEFAULT_RUNTIME_CONFIG)
    })

    it('explains each setting in a comment and uses block style', () => {
      const text = renderConfigTemplate([codex])
      expect(text).to.match(/^# cleanroom runtime config/)
      expect(text).to.contain('# Backend for new sandboxes')
      expect(text).to.contain('\nbackends:\n  # Linux namespaces')
      // Block style for the settings; comments may show values such as "Bearer {}".
      expect(text.split('\n').filter((line) => !line.trimStart().startsWith('#')).join('\n')).not.to.match(/[{[]/)
    })

    it('shows the built-in agents commented out, ready to uncomment', () => {
      const text = renderConfigTemplate([codex])
      expect(text).to.contain('#  codex:\n#    description: OpenAI Codex CLI\n#    command: codex\n')
      const uncommented = text.replace(/^# {2}/gm, '  ')
      const config = parseRuntimeConfigText('/x/config.yaml', uncommented)
      expect(config.agents.codex?.command).to.equal('codex')
      expect(config.agents.codex?.network).to.deep.equal([{host: 'api.openai.com', ports: [443], reason: 'API'}])
    })

    it('is written once and kept unless forced', async () => {
      const dir = await dirs.make()
      const path = join(dir, 'nested', 'config.yaml')
      await writeRuntimeConfig(path, 'default_backend: linux-ns\n', false)
      const error = await writeRuntimeConfig(path, 'default_backend: gvisor\n', false).catch((error_: unknown) => error_)
      expect((error as CleanroomError).code).to.equal('config_exists')
      expect((error as CleanroomError).suggestions.join('\n')).to.contain('--force')
      expect(await readFile(path, 'utf8')).to.equal('default_backend: linux-ns\n')
      await writeRuntimeConfig(path, 'default_backend: gvisor\n', true)
      expect(await readFile(path, 'utf8')).to.equal('default_backend: gvisor\n')
    })

    it('refuses to write over a directory', async () => {
      const dir = await dirs.make()
      await mkdir(join(dir, 'config.yaml'))
      const error = await writeRuntimeConfig(join(dir, 'config.yaml'), 'x: 1\n', true).catch((error_: unknown) => error_)
      expect((error as CleanroomError).code).to.equal('config_exists')
    })
  })
})
