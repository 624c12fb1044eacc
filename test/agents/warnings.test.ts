import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import type {AgentSpec} from '../../src/agents/spec.js'
import {agentWarnings, missingCredentialSources} from '../../src/agents/warnings.js'
import {tempDirs} from '../helpers/tmp.js'

function spec(fields: Partial<AgentSpec>): AgentSpec {
  return {name: 'x', command: 'x', test: 'true', credentials: [], network: [], env: {}, ...fields}
}

const HOME = '/home/user'

function networkWarning(host: string): string | undefined {
  return agentWarnings(spec({network: [{host, ports: [443]}]}), HOME)[0]
}

describe('what an agent asks for that deserves a look', () => {
  it('flags credential sources outside the home, and the whole home', () => {
    const credentials = ['/etc/shadow', '/home/other/.ssh/id_ed25519', '~', '/home/user', '~/.x/token', '/home/user/.x/token'].map((source) => ({source, target: '~/x'}))
    expect(agentWarnings(spec({credentials}), HOME)).to.deep.equal([
      'x copies /etc/shadow: outside your home directory',
      'x copies /home/other/.ssh/id_ed25519: outside your home directory',
      'x copies ~: your whole home directory',
      'x copies /home/user: your whole home directory',
    ])
  })

  it('flags rules for loopback, private, link-local and metadata addresses, and rules that cover them', () => {
    const cases: Record<string, string | undefined> = {
      '127.0.0.0/8': 'covers loopback (services on this machine)',
      '127.0.0.1': 'is loopback (services on this machine)',
      '::1': 'is loopback (services on this machine)',
      '10.0.0.0/8': 'covers private network',
      '172.16.0.0/12': 'covers private network',
      '192.168.1.0/24': 'covers private network',
      'fc00::/7': 'covers cloud metadata (instance credentials), private network',
      '169.254.0.0/16': 'covers cloud metadata (instance credentials), link-local',
      '169.254.169.254': 'is cloud metadata (instance credentials), link-local',
      'fe80::/10': 'covers link-local',
      'fd00:ec2::254': 'is cloud metadata (instance credentials), private network',
      '0.0.0.0/1': 'covers cloud metadata (instance credentials), loopback (services on this machine), unspecified addresses (this machine), private network, shared (carrier-grade NAT) network',
      '8.8.8.8': undefined,
      '8.0.0.0/8': undefined,
    }
    for (const [host, expected] of Object.entries(cases)) {
      expect(networkWarning(host), host).to.equal(expected === undefined ? undefined : `x may reach ${host}:443: ${expected}`)
    }
  })

  it('flags loopback, metadata and local network names, and leaves public names alone', () => {
    const cases: Record<string, string | undefined> = {
      localhost: 'a loopback name (services on this machine)',
      'app.localhost': 'a loopback name (services on this machine)',
      'metadata.google.internal': 'a cloud metadata name (instance credentials)',
      'db.corp.internal': 'a local network name',
      '*.corp.internal': 'a local network name',
      'printer.local': 'a local network name',
      router: 'a single-label name, resolved on your local network',
      'api.openai.com': undefined,
      '*.githubusercontent.com': undefined,
    }
    for (const [host, expected] of Object.entries(cases)) {
      expect(networkWarning(host), host).to.equal(expected === undefined ? undefined : `x may reach ${host}:443: ${expected}`)
    }
  })

  describe('credential files on this host', () => {
    const dirs = tempDirs()
    afterEach(() => dirs.cleanup())

    it('lists the sources that are missing, ~ meaning the home given', async () => {
      const home = await dirs.make()
      await mkdir(join(home, '.x'))
      await writeFile(join(home, '.x/token'), 't')
      const credentials = [{source: '~/.x/token', target: '~/.x/token'}, {source: '~/.x/other', target: '~/.x/other'}, {source: join(home, '.x/token'), target: '~/t'}]
      expect(missingCredentialSources(spec({credentials}), home)).to.deep.equal(['~/.x/other'])
    })
  })
})
