import {expect} from 'chai'

import {registryAccess} from '../../src/images/access.js'
import {parseChallenge} from '../../src/images/auth.js'
import {type Descriptor} from '../../src/images/manifest.js'
import {hostPlatform, selectPlatformManifest} from '../../src/images/platform.js'
import {formatReference, isLoopbackRegistry, parseImageReference} from '../../src/images/reference.js'
import {RegistryClient} from '../../src/images/registry.js'
import {CleanroomError} from '../../src/errors/index.js'
import {parseRuntimeConfigText} from '../../src/config/parse.js'

const DIGEST = `sha256:${'ab'.repeat(32)}`

describe('image references, platforms and auth challenges', () => {
  it('reads references the way Docker does', () => {
    const table: [string, string][] = [
      ['busybox', 'docker.io/library/busybox:latest'],
      ['acme/tool:1.2', 'docker.io/acme/tool:1.2'],
      ['ghcr.io/acme/base', 'ghcr.io/acme/base:latest'],
      ['ghcr.io/acme/base:1.2.3-rc_1', 'ghcr.io/acme/base:1.2.3-rc_1'],
      [`ghcr.io/acme/base@${DIGEST}`, `ghcr.io/acme/base@${DIGEST}`],
      [`ghcr.io/acme/base:1.2@${DIGEST}`, `ghcr.io/acme/base:1.2@${DIGEST}`],
      ['localhost/app', 'localhost/app:latest'],
      ['127.0.0.1:5000/a/b/c:v1', '127.0.0.1:5000/a/b/c:v1'],
      ['index.docker.io/library/alpine:3', 'docker.io/library/alpine:3'],
      ['[::1]:5000/app', '[::1]:5000/app:latest'],
    ]
    for (const [input, expected] of table) expect(formatReference(parseImageReference(input)), input).to.equal(expected)
  })

  it('refuses references that are not, saying why', () => {
    for (const bad of ['', 'acme/UPPER', 'a b', 'ghcr.io/acme/base@sha256:abc', 'ghcr.io/acme/base:-tag', 'ghcr.io/', 'acme//tool', 'bad_host:99999999/x']) {
      const error = (() => {
        try {
          parseImageReference(bad)
          return undefined
        } catch (error_) {
          return error_ as CleanroomError
        }
      })()
      expect(error?.code, bad).to.equal('image_ref_invalid')
      expect(error?.exitCode).to.equal(2)
    }
  })

  it('allows plain HTTP only for loopback registries and ones marked insecure', () => {
    expect(['localhost:5000', '127.0.0.1:5000', '127.1.2.3', '[::1]:443', 'localhost'].every((host) => isLoopbackRegistry(host))).to.equal(true)
    expect(['ghcr.io', '10.0.0.1:5000', 'localhost.evil.com', '127.0.0.1.nip.io'].some((host) => isLoopbackRegistry(host))).to.equal(false)
    const origin = (ref: string, insecure?: boolean) => {
      const client = new RegistryClient(parseImageReference(ref), insecure === undefined ? {} : {insecure})
      client.close()
      return client.origin
    }
    expect(origin('ghcr.io/acme/base')).to.equal('https://ghcr.io')
    expect(origin('busybox')).to.equal('https://registry-1.docker.io')
    expect(origin('10.0.0.1:5000/app')).to.equal('https://10.0.0.1:5000')
    expect(origin('10.0.0.1:5000/app', true)).to.equal('http://10.0.0.1:5000')
    expect(origin('127.0.0.1:5000/app')).to.equal('http://127.0.0.1:5000')
  })

  it('picks the host platform from an index: arm64 with or without v8, amd64 without a variant or v1, never v2/v3', () => {
    const entry = (architecture: string, variant?: string, os = 'linux'): Descriptor => ({
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      digest: `sha256:${(architecture + (variant ?? '') + os).padEnd(64, '0').replace(/[^a-f0-9]/g, 'f').slice(0, 64)}`,
      size: 1,
      platform: {os, architecture, ...(variant && {variant})},
    })
    const amd64 = {os: 'linux', architecture: 'amd64'}
    const arm64 = {os: 'linux', architecture: 'arm64', variant: 'v8'}
    const index = {kind: 'index' as const, manifests: [entry('amd64', 'v3'), entry('arm64'), entry('amd64', undefined, 'windows'), entry('amd64', 'v1'), entry('unknown', undefined, 'unknown')]}
    expect(selectPlatformManifest(index, amd64, 'x').platform).to.deep.equal({os: 'linux', architecture: 'amd64', variant: 'v1'})
    expect(selectPlatformManifest(index, arm64, 'x').platform).to.deep.equal({os: 'linux', architecture: 'arm64'})
    const onlyV3 = {kind: 'index' as const, manifests: [entry('amd64', 'v3'), entry('arm', 'v7')]}
    expect(() => selectPlatformManifest(onlyV3, amd64, 'repo@sha256:x')).to.throw(/no image for linux\/amd64 \(it has: linux\/amd64\/v3, linux\/arm\/v7\)/)
    expect(hostPlatform('x64')).to.deep.equal(amd64)
    expect(hostPlatform('arm64')).to.deep.equal(arm64)
  })

  it('parses WWW-Authenticate challenges, commas inside quotes included', () => {
    expect(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push"')).to.deep.equal({
      scheme: 'bearer',
      params: {realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull,push'},
    })
    expect(parseChallenge('Basic realm="Registry Realm"')).to.deep.equal({scheme: 'basic', params: {realm: 'Registry Realm'}})
  })

  it('reads registry secrets from the named environment variables, and says which one is missing', () => {
    const registries = {'ghcr.io': {username: 'me', password_env: 'GHCR_PASSWORD'}, 'reg.internal:5000': {insecure: true, token_env: 'REG_TOKEN'}}
    expect(registryAccess(registries, 'ghcr.io', {GHCR_PASSWORD: 's3cret'})).to.deep.equal({username: 'me', password: 's3cret'})
    expect(registryAccess(registries, 'reg.internal:5000', {REG_TOKEN: 't0ken'})).to.deep.equal({insecure: true, token: 't0ken'})
    expect(registryAccess(registries, 'docker.io', {})).to.deep.equal({})
    expect(() => registryAccess(registries, 'ghcr.io', {})).to.throw('registries."ghcr.io".password_env names GHCR_PASSWORD, which is not set in this environment')
  })

  it('takes registries: from the runtime config strictly, with the line of each problem', () => {
    const config = parseRuntimeConfigText('/x/config.yaml', ['registries:', '  ghcr.io:', '    username: me', '    password_env: GHCR_TOKEN', '  registry.internal:5000:', '    insecure: true', ''].join('\n'))
    expect(config.registries).to.deep.equal({'ghcr.io': {username: 'me', password_env: 'GHCR_TOKEN'}, 'registry.internal:5000': {insecure: true}})
    const text = ['registries:', '  Bad_Host!:', '    insecure: true', '  ghcr.io:', '    username: me', '    password_env: "ghp_literal-secret"', '    insecure: yes please', '    colour: red', ''].join('\n')
    const error = (() => {
      try {
        parseRuntimeConfigText('/x/config.yaml', text)
        return undefined
      } catch (error_) {
        return error_ as CleanroomError
      }
    })()
    expect(error?.code).to.equal('config_invalid')
    const lines = error!.message.split('\n').slice(1)
    expect(lines).to.deep.equal([
      '/x/config.yaml:2:3 registries.Bad_Host!: "Bad_Host!" is not a registry host (lower-case host name or address, optional :port)',
      '/x/config.yaml:4:3 registries.ghcr.io: username and password_env go together',
      '/x/config.yaml:6:19 registries.ghcr.io.password_env: must name an environment variable (letters, digits, _), not hold the secret itself',
      '/x/config.yaml:7:15 registries.ghcr.io.insecure: must be true or false',
      '/x/config.yaml:8:5 registries.ghcr.io.colour: unknown key (expected one of: username, password_env, token_env, insecure)',
    ])
  })
})
