import {expect} from 'chai'

import {CleanroomError} from '../../src/errors/index.js'
import {parsePluginSource} from '../../src/plugins/source.js'

const cwd = '/work/here'

describe('plugin sources, as plugins install reads them', () => {
  it('reads file: URLs and paths, made absolute', async () => {
    expect(await parsePluginSource('file:///tmp/a.tgz', {cwd})).to.deep.equal({kind: 'url', url: 'file:///tmp/a.tgz', spec: 'file:/tmp/a.tgz', label: 'file:///tmp/a.tgz'})
    expect(await parsePluginSource('file:rel/a.tgz', {cwd})).to.deep.equal({kind: 'url', url: 'file:///work/here/rel/a.tgz', spec: 'file:/work/here/rel/a.tgz', label: 'file:rel/a.tgz'})
  })

  it('reads git URLs, GitHub slugs and npm names with tags', async () => {
    expect(await parsePluginSource('git+ssh://git@github.com/a/b.git', {cwd})).to.include({kind: 'url', spec: 'git+ssh://git@github.com/a/b.git'})
    expect(await parsePluginSource('acme/cleanroom-agent-x', {cwd})).to.include({kind: 'url', spec: 'github:acme/cleanroom-agent-x'})
    expect(await parsePluginSource('@acme/cleanroom-agent-x@1.2.0', {cwd})).to.deep.equal({kind: 'npm', name: '@acme/cleanroom-agent-x', tag: '1.2.0', label: '@acme/cleanroom-agent-x@1.2.0'})
    expect(await parsePluginSource('left-pad', {cwd})).to.include({kind: 'npm', name: 'left-pad', tag: 'latest'})
  })

  it('tries a bare name as the friendly form first', async () => {
    const friendly = {scope: 'cleanroom', prefix: 'agent', exists: async (name: string) => name === '@cleanroom/agent-acme'}
    expect(await parsePluginSource('acme', {cwd, friendly})).to.include({name: '@cleanroom/agent-acme'})
    expect(await parsePluginSource('other', {cwd, friendly})).to.include({name: 'other'})
  })

  it('refuses a bare path, naming the file: URL to use, and what is no package name', async () => {
    const error = await parsePluginSource('/tmp/a.tgz', {cwd}).catch((thrown: unknown) => thrown)
    expect(error).to.be.instanceOf(CleanroomError)
    expect((error as CleanroomError).suggestions).to.deep.equal(['cleanroom plugins install file:///tmp/a.tgz'])
    expect(await parsePluginSource('Not A Name', {cwd}).catch((thrown: unknown) => (thrown as CleanroomError).code)).to.equal('usage')
  })
})
