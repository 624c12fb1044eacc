import {expect} from 'chai'

import {completeAgentSpec} from '../../src/agents/validate.js'
import {planAgentCredentials, planRequestedCredentials, renderGrant} from '../../src/credentials/grant.js'
import {DEFAULT_CREDENTIAL_SETTINGS} from '../../src/credentials/settings.js'
import type {RouteSpec} from '../../src/credentials/spec.js'

const anthropic: RouteSpec = {
  name: 'anthropic',
  upstream: 'https://api.anthropic.com',
  header: 'x-api-key',
  format: '{}',
  secret: [{env: 'ANTHROPIC_API_KEY'}, {file: '~/.keys/anthropic'}],
  env: {ANTHROPIC_BASE_URL: '{url}', ANTHROPIC_AUTH_TOKEN: '{phantom}'},
}
const agent = completeAgentSpec('claude', {
  command: 'claude',
  credentials: [
    {source: '~/.claude/.credentials.json', target: '~/.claude/.credentials.json'},
    {source: '~/.claude.json', target: '~/.claude.json', secret: false, omit: ['primaryApiKey']},
  ],
  gateway: {routes: [anthropic], logins: []},
})
const options = {settings: DEFAULT_CREDENTIAL_SETTINGS, env: {ANTHROPIC_API_KEY: ' sk-ant-1 '}, hostHome: '/home/me', trusted: true}

describe('what cleanroom agent gives an agent (credential plans)', () => {
  it('gateway mode by default: the key from the environment is sent to the daemon, files are read there, only non-secret files are copied', () => {
    const plan = planAgentCredentials(agent, options)
    expect(plan.mode).to.equal('gateway')
    expect(plan.copy).to.deep.equal([{source: '~/.claude.json', target: '~/.claude.json', secret: false, omit: ['primaryApiKey']}])
    expect(plan.grant!.routes[0]!.secret).to.deep.equal([{provided: 'sk-ant-1', from: 'ANTHROPIC_API_KEY from your environment'}, {file: '/home/me/.keys/anthropic'}])
    expect(plan.notices).to.deep.equal([])
    const unset = planAgentCredentials(agent, {...options, env: {}})
    expect(unset.grant!.routes[0]!.secret).to.deep.equal([{file: '/home/me/.keys/anthropic'}])
  })

  it('credentials: copy copies every file whole, and says each run that the tokens are inside', () => {
    const plan = planAgentCredentials({...agent, credential_mode: 'copy'}, options)
    expect(plan.grant).to.equal(undefined)
    expect(plan.copy).to.deep.equal([
      {source: '~/.claude/.credentials.json', target: '~/.claude/.credentials.json'},
      {source: '~/.claude.json', target: '~/.claude.json', secret: false},
    ])
    expect(plan.notices).to.have.length(1)
    expect(plan.notices[0]).to.match(/^warning: claude runs with credentials: copy: ~\/\.claude\/\.credentials\.json is copied into the sandbox, where anything that runs there can read it, and a token refreshed there may be rotated/)
    expect(planAgentCredentials({...agent, credential_mode: 'none'}, options)).to.deep.equal({mode: 'none', copy: [], notices: []})
  })

  it('changes an agent\'s route by the runtime config (another upstream), and uses an installed plugin\'s routes only when granted', () => {
    const settings = {...DEFAULT_CREDENTIAL_SETTINGS, routes: {anthropic: {upstream: 'http://127.0.0.1:8080'}}}
    expect(planAgentCredentials(agent, {...options, settings}).grant!.routes[0]).to.include({upstream: 'http://127.0.0.1:8080', header: 'x-api-key'})
    const untrusted = planAgentCredentials(agent, {...options, trusted: false})
    expect(untrusted.grant!.routes).to.deep.equal([])
    expect(untrusted.notices).to.deep.equal(['claude: route anthropic of an installed plugin is not used: add it to credentials.grant in config.yaml to allow it'])
    expect(planAgentCredentials(agent, {...options, trusted: false, settings: {...DEFAULT_CREDENTIAL_SETTINGS, grant: ['anthropic']}}).grant!.routes).to.have.length(1)
  })

  it('gives a repository\'s requested routes only when the runtime config grants and defines them', () => {
    const github: Partial<RouteSpec> = {name: 'github', upstream: 'https://api.github.com', header: 'authorization', format: 'Bearer {}', secret: [{command: ['gh', 'auth', 'token'], ttl_seconds: 900}], env: {GH_TOKEN: '{phantom}'}}
    const settings = {...DEFAULT_CREDENTIAL_SETTINGS, grant: ['github'], routes: {github}}
    const {grant, refused} = planRequestedCredentials(['github', 'npm'], {settings, env: {}, hostHome: '/home/me'})
    expect(refused).to.deep.equal(['npm'])
    expect(grant!.routes[0]!.secret).to.deep.equal([{command: ['gh', 'auth', 'token'], ttl_seconds: 900}])
    expect(planRequestedCredentials(['github'], {settings: {...settings, grant: []}, env: {}, hostHome: '/'})).to.deep.equal({refused: ['github']})
  })

  it('says what the agent got, and how to give it a login when it got nothing', () => {
    const got = renderGrant('claude', {routes: [{name: 'anthropic', upstream: 'https://api.anthropic.com', url: 'http://127.0.0.1:3129/anthropic', source: 'ANTHROPIC_API_KEY from your environment', intercepted: []}], logins: [], args: [], env: []})
    expect(got).to.deep.equal(['claude gets anthropic through the credential gateway (ANTHROPIC_API_KEY from your environment; upstream https://api.anthropic.com): the sandbox holds a phantom token only'])
    const none = renderGrant('claude', {routes: [{name: 'anthropic', upstream: 'https://api.anthropic.com', url: '', source: null, intercepted: []}], logins: [{name: 'claude', file: '~/.claude/.credentials.json', state: 'no host login', login_command: 'claude /login', intercepted: []}], args: [], env: []})
    expect(none).to.deep.equal(['claude: no host credentials found: provide a key for anthropic (docs/credentials.md), or run `claude /login` on the host; logging in inside the sandbox works too'])
  })
})
