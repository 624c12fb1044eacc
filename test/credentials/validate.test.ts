import {expect} from 'chai'

import {parseGateway, upstreamProblem} from '../../src/credentials/validate.js'

const route = {name: 'api', upstream: 'https://api.example', header: 'authorization', format: 'Bearer {}', secret: {env: 'API_KEY'}, env: {API_URL: '{url}', API_KEY: '{phantom}'}}
const login = {
  name: 'sso',
  file: '~/.tool/auth.json',
  tokens: [{path: 'tokens.access', kind: 'access'}, {path: 'tokens.refresh', kind: 'refresh'}],
  token_endpoints: [{host: 'auth.example', path: '/oauth/token'}],
  api_hosts: ['api.example', 'api.example:8443'],
  login_command: 'tool login',
}

function problems(value: unknown, runtimeConfig = false): string[] {
  const found: string[] = []
  parseGateway(value, ['gateway'], (path, message) => found.push(`${path.join('.')}: ${message}`), {runtimeConfig})
  return found
}

describe('agent gateway declarations (plugins and the runtime config)', () => {
  it('reads routes and logins, with hosts as host or host:port', () => {
    const found: string[] = []
    const gateway = parseGateway({routes: [route], logins: [login]}, ['gateway'], (path, message) => found.push(`${path.join('.')}: ${message}`), {runtimeConfig: false})
    expect(found).to.deep.equal([])
    expect(gateway!.routes[0]).to.deep.include({secret: [{env: 'API_KEY'}], header: 'authorization'})
    expect(gateway!.logins[0]!.api_hosts).to.deep.equal([{host: 'api.example', port: 443}, {host: 'api.example', port: 8443}])
    expect(gateway!.logins[0]!.token_endpoints).to.deep.equal([{host: 'auth.example', port: 443, path: '/oauth/token'}])
  })

  it('refuses an upstream a key could leak to in the clear, and URLs with a user or a query', () => {
    expect(upstreamProblem('http://api.example')).to.match(/https/)
    expect(upstreamProblem('http://127.0.0.1:8080')).to.equal(undefined)
    expect(upstreamProblem('http://[::1]:8080/v1')).to.equal(undefined)
    expect(upstreamProblem('https://user:pw@api.example')).to.match(/user/)
    expect(upstreamProblem('https://api.example/?key=1')).to.match(/query/)
    expect(upstreamProblem('ftp://api.example')).to.match(/https/)
  })

  it('lets only the runtime config run a command or hold a secret value', () => {
    const withCommand = {routes: [{...route, secret: {command: ['gh', 'auth', 'token']}}]}
    expect(problems(withCommand)).to.deep.equal(['gateway.routes.0.secret.command: is only allowed in the runtime config (config.yaml): a plugin cannot make cleanroom run a command or carry a secret'])
    expect(problems(withCommand, true)).to.deep.equal([])
    expect(problems({routes: [{...route, secret: {value: 'sk-1'}}]})).to.have.length(1)
    expect(problems({routes: [{...route, secret: [{env: 'A'}, {file: '~/.key', field: 'api.key'}]}]})).to.deep.equal([])
  })

  it('names each problem at its path', () => {
    expect(
      problems({
        routes: [
          {...route, header: 'bad header', format: 'Bearer', secret: {env: 'NOT A NAME'}},
          {...route, phantom_format: 'no-placeholder'},
        ],
        logins: [{...login, file: '/etc/shadow', tokens: [{path: 'r', kind: 'refresh'}], api_hosts: ['*.api.example'], login_command: ''}],
        extra: 1,
      }),
    ).to.deep.equal([
      'gateway.extra: unknown key (expected one of: routes, logins)',
      'gateway.routes.0.header: must be an HTTP header name, e.g. x-api-key',
      'gateway.routes.0.format: must be the header value with {} where the secret goes, e.g. "Bearer {}"',
      'gateway.routes.0.secret.env: must be an environment variable name',
      'gateway.routes.1.phantom_format: must hold {} once, with letters, digits, ".", "_" or "-" around it, e.g. sk-ant-api03-{}',
      "gateway.logins.0.file: must be ~/…: the same place in your home and the sandbox's",
      'gateway.logins.0.tokens: must include the access token (kind: access)',
      'gateway.logins.0.api_hosts.0: must be one host name or address, not a wildcard or a CIDR',
      'gateway.logins.0.login_command: must say what to run on the host to log in again, e.g. codex login',
      'gateway.routes.1.name: "api" is declared twice',
    ])
  })

  it('bounds what a declaration may hold: list lengths, names, URLs and strings, and control characters', () => {
    const many = <T>(n: number, make: (i: number) => T): T[] => Array.from({length: n}, (_, i) => make(i))
    expect(problems({routes: many(33, (i) => ({...route, name: `r${i}`}))})).to.deep.equal(['gateway.routes: has 33 entries: at most 32 are allowed'])
    expect(problems({logins: many(17, (i) => ({...login, name: `l${i}`}))})).to.deep.equal(['gateway.logins: has 17 entries: at most 16 are allowed'])
    expect(problems({routes: [{...route, hosts: many(65, (i) => `h${i}.example`)}]})).to.deep.equal(['gateway.routes.0.hosts: has 65 entries: at most 64 are allowed'])
    expect(problems({routes: [{...route, name: 'a'.repeat(65)}]})).to.deep.equal(['gateway.routes.0.name: must be a route name (lower-case letters, digits and -, starting with a letter; at most 64)'])
    expect(problems({routes: [{...route, upstream: `https://api.example/${'p'.repeat(2048)}`}]})).to.deep.equal(['gateway.routes.0.upstream: is 2068 characters long: at most 2048 are allowed'])
    expect(problems({routes: [{...route, args: many(257, () => '-v')}]})).to.deep.equal(['gateway.routes.0.args: has 257 entries: at most 256 are allowed'])
    expect(problems({routes: [{...route, env: {API_URL: 'x\u001b[2Jy'}}]})).to.deep.equal(['gateway.routes.0.env.API_URL: contains the control character U+001B: remove it'])
    expect(problems({routes: [{...route, env: Object.fromEntries(many(257, (i) => [`V${i}`, 'x'] as const))}]})).to.deep.equal(['gateway.routes.0.env: has 257 variables: at most 256 are allowed'])
    expect(problems({logins: [{...login, login_command: `tool login\u0007`}]})).to.deep.equal(['gateway.logins.0.login_command: contains the control character U+0007: remove it'])
    expect(problems({routes: [{...route, secret: {command: ['gh', 'x'.repeat(16_385)]}}]}, true)).to.deep.equal(['gateway.routes.0.secret.command: holds a string that is 16385 characters long: at most 16384 are allowed'])
  })

  it('keeps a login\'s auth file inside the sandbox\'s home', () => {
    expect(problems({logins: [{...login, file: '~//etc/passwd'}]})).to.deep.equal(['gateway.logins.0.file: credential target "~//etc/passwd" is outside the sandbox home /home/cleanroom; a credential target must be ~/…, a path relative to the sandbox home, or an absolute path inside it'])
    expect(problems({logins: [{...login, file: '~/../root/.x'}]})).to.deep.equal(['gateway.logins.0.file: "~/../root/.x" must not contain ".." segments'])
  })
})
