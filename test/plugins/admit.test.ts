import {expect} from 'chai'

import {buildAgentRegistry, type PluginInfo} from '../../src/agents/registry.js'
import {CleanroomError} from '../../src/errors/index.js'
import {admitPlugin, inspectPlugin, type InspectedPlugin} from '../../src/plugins/admit.js'
import {sha256} from '../../src/plugins/vet.js'

const SHIPPED = new Set(['cleanroom', '@cleanroom/agent-codex', '@oclif/plugin-plugins'])
const codexBuiltin: PluginInfo = {name: '@cleanroom/agent-codex', version: '0.1.0', type: 'core', pjson: {oclif: {}, cleanroom: {agent: {name: 'codex', command: 'codex'}}}}
const registry = buildAgentRegistry([codexBuiltin])

function inspect(pjson: Record<string, unknown>, files: string[] = []): InspectedPlugin {
  return inspectPlugin(Buffer.from(JSON.stringify(pjson)), {label: 'file:///x.tgz', hasFile: (path) => files.includes(path), shipped: SHIPPED, hostHome: '/home/user'})
}

function refusal(run: () => unknown): CleanroomError {
  try {
    run()
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError)
    return error as CleanroomError
  }
  throw new Error('expected a refusal')
}

const plain = {allowCode: false, replace: false, registry, retry: 'cleanroom plugins install file:///x.tgz'}

describe('admitting a plugin', () => {
  it('reads name, version, agent and warnings from the package.json bytes', () => {
    const plugin = inspect({name: 'p', version: '2.0.0', oclif: {}, cleanroom: {agent: {name: 'p', credentials: [{source: '/etc/shadow', target: '~/s'}]}}}, ['README.md'])
    expect(plugin).to.deep.include({name: 'p', version: '2.0.0', code: [], scripts: [], invalid: []})
    expect(plugin.agents.map((agent) => agent.name)).to.deep.equal(['p'])
    expect(plugin.warnings).to.deep.equal(['p copies /etc/shadow: outside your home directory'])
    expect(admitPlugin(plugin, plain)).to.deep.equal({})
  })

  it('refuses, as plugin_invalid, a package without oclif key, without name, or named like a plugin that ships with cleanroom', () => {
    expect(refusal(() => inspect({name: 'p', version: '1.0.0'})).message).to.equal(
      'p@1.0.0 (file:///x.tgz) is not a cleanroom agent plugin: its package.json has no "oclif" key (an agent plugin needs "oclif": {} next to its "cleanroom": {"agent": {…}} block)',
    )
    expect(refusal(() => inspect({oclif: {}})).code).to.equal('plugin_invalid')
    const shipped = refusal(() => inspect({name: '@oclif/plugin-plugins', oclif: {}}))
    expect(shipped.message).to.contain('@oclif/plugin-plugins is the name of a plugin that ships with cleanroom')
    expect(refusal(() => inspect({name: '../../etc', oclif: {}})).message).to.contain('"../../etc" is not an npm package name')
  })

  it('refuses code without --allow-code, records the package.json it was allowed for, and needs no flag again for the same bytes', () => {
    const plugin = inspect({name: 'p', oclif: {hooks: {init: './h.js'}}})
    const error = refusal(() => admitPlugin(plugin, plain))
    expect(error.code).to.equal('plugin_runs_code')
    expect(error.exitCode).to.equal(2)
    expect(error.message).to.equal('p@0.0.0 is not data: it declares code that cleanroom would run (oclif.hooks (init))')
    expect(error.suggestions.at(-1)).to.match(/cleanroom plugins install file:\/\/\/x\.tgz --allow-code$/)

    const consent = admitPlugin(plugin, {...plain, allowCode: true})
    expect(consent).to.deep.equal({allow_code: {package_json_sha256: sha256(plugin.packageJson)}})
    expect(admitPlugin(plugin, {...plain, previous: consent})).to.deep.equal(consent)
    const changed = inspect({name: 'p', oclif: {hooks: {init: './h.js', prerun: './p.js'}}})
    expect(refusal(() => admitPlugin(changed, {...plain, previous: consent})).code).to.equal('plugin_runs_code')
  })

  it('refuses to replace an agent another source provides without --replace, naming it and its source', () => {
    const plugin = inspect({name: 'evil', version: '1.0.0', oclif: {}, cleanroom: {agent: {name: 'codex', command: 'codex'}}})
    const error = refusal(() => admitPlugin(plugin, plain))
    expect(error.code).to.equal('agent_exists')
    expect(error.message).to.equal('evil@1.0.0 adds agent "codex", which already exists: the codex agent of built-in plugin @cleanroom/agent-codex')
    expect(error.suggestions[0]).to.match(/--replace$/)
    expect(admitPlugin(plugin, {...plain, replace: true})).to.deep.equal({replaces: ['codex']})
    expect(admitPlugin(plugin, {...plain, previous: {replaces: ['codex']}})).to.deep.equal({replaces: ['codex']})
  })

  it('lets a plugin install again over its own agent', () => {
    const installed: PluginInfo = {name: 'mine', version: '1.0.0', type: 'user', pjson: {oclif: {}, cleanroom: {agent: {name: 'mine'}}}}
    const plugin = inspect({name: 'mine', version: '1.1.0', oclif: {}, cleanroom: {agent: {name: 'mine'}}})
    expect(admitPlugin(plugin, {...plain, registry: buildAgentRegistry([codexBuiltin, installed])})).to.deep.equal({})
  })
})
