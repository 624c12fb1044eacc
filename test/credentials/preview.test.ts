import {expect} from 'chai'

import {inspectPlugin} from '../../src/plugins/admit.js'
import {renderPreview} from '../../src/plugins/preview.js'

function preview(agent: Record<string, unknown>): string[] {
  const pjson = {name: 'cleanroom-agent-tool', version: '1.0.0', oclif: {}, cleanroom: {agent}}
  return renderPreview(inspectPlugin(Buffer.from(JSON.stringify(pjson)), {label: 'file:///tool.tgz', hasFile: () => false, shipped: new Set(['cleanroom']), hostHome: '/home/user'}))
}

describe('plugins install: the preview of an agent with a credential gateway', () => {
  it('names where each route sends its key and which hosts a login intercepts, used only once granted, and which files are copied in which mode', () => {
    const lines = preview({
      name: 'tool',
      command: 'tool',
      credentials: [
        {source: '~/.tool/auth.json', target: '~/.tool/auth.json'},
        {source: '~/.tool/settings.json', target: '~/.tool/settings.json', secret: false},
      ],
      network: [{host: 'api.tool.example', ports: [443]}],
      gateway: {
        routes: [{name: 'tool-api', upstream: 'https://api.tool.example/v1', header: 'authorization', format: 'Bearer {}', secret: [{env: 'TOOL_API_KEY'}], env: {TOOL_BASE_URL: '{url}', TOOL_API_KEY: '{phantom}'}}],
        logins: [
          {
            name: 'tool-sso',
            file: '~/.tool/auth.json',
            tokens: [{path: 'access', kind: 'access'}, {path: 'refresh', kind: 'refresh'}],
            token_endpoints: [{host: 'auth.tool.example', path: '/oauth/token'}],
            api_hosts: ['api.tool.example'],
            login_command: 'tool login',
          },
        ],
      },
    })
    expect(lines).to.deep.equal([
      'plugin cleanroom-agent-tool@1.0.0 adds agent "tool"',
      '  tool may reach: api.tool.example:443',
      '  tool copies into its sandbox: ~/.tool/settings.json -> ~/.tool/settings.json',
      '  tool copies only in copy mode (credentials: copy in config.yaml): ~/.tool/auth.json -> ~/.tool/auth.json',
      '  tool gateway route tool-api -> https://api.tool.example/v1 (key from $TOOL_API_KEY), used once its name is in credentials.grant of config.yaml',
      '  tool gateway login tool-sso: ~/.tool/auth.json, phantoms in the sandbox; intercepts auth.tool.example, api.tool.example, used once its name is in credentials.grant of config.yaml',
    ])
  })

  it('says an agent without a gateway copies every credential file, as before', () => {
    expect(preview({name: 'tool', command: 'tool', credentials: [{source: '~/.tool/auth.json', target: '~/.tool/auth.json'}]})).to.deep.equal([
      'plugin cleanroom-agent-tool@1.0.0 adds agent "tool"',
      '  tool may reach: nothing beyond the policy',
      '  tool copies into its sandbox: ~/.tool/auth.json -> ~/.tool/auth.json',
    ])
  })
})
