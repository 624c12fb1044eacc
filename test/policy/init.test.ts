import {expect} from 'chai'
import {mkdir, readFile, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {CleanroomError} from '../../src/errors/index.js'
import {compilePolicy, DEFAULT_POLICY} from '../../src/policy/compile.js'
import {loadPolicy} from '../../src/policy/load.js'
import {renderPolicyTemplate} from '../../src/policy/template.js'
import {writePolicyFile} from '../../src/policy/write.js'
import {YamlFile} from '../../src/util/yaml-file.js'
import {tempDirs} from '../helpers/tmp.js'

describe('policy init', () => {
  const dirs = tempDirs('cleanroom-policy-init-')
  afterEach(() => dirs.cleanup())

  describe('the starter template', () => {
    const template = renderPolicyTemplate()

    it('is a valid policy that allows nothing: the default policy', () => {
      expect(compilePolicy(new YamlFile('cleanroom.yaml', template))).to.deep.equal(DEFAULT_POLICY)
    })

    it('explains every field in a comment, in block style', () => {
      for (const text of ['# Format version', '# The root filesystem', '# What happens to a connection no rule matches', '# Destinations sandboxes may connect to', '# Destinations refused']) {
        expect(template).to.contain(text)
      }
      expect(template).to.not.match(/[[{]\s*$/m)
      expect(template).to.contain('    default: deny\n')
    })

    it('gives a valid policy with the example rules when they are uncommented', () => {
      const uncommented = template.replaceAll(/^( {4})# ( {2})/gm, '$1$2')
      const policy = compilePolicy(new YamlFile('cleanroom.yaml', uncommented))
      expect(policy.allow).to.deep.equal([
        {host: 'api.github.com', ports: [443], reason: 'git over https'},
        {host: 'registry.npmjs.org', ports: [443]},
      ])
      expect(policy.deny).to.deep.equal([{host: '169.254.169.254', reason: 'cloud metadata'}])
    })
  })

  describe('writing', () => {
    it('writes cleanroom.yaml, which then loads', async () => {
      const dir = await dirs.make()
      const path = await writePolicyFile(dir, renderPolicyTemplate(), false)
      expect(path).to.equal(join(dir, 'cleanroom.yaml'))
      expect(await readFile(path, 'utf8')).to.equal(renderPolicyTemplate())
      expect(await loadPolicy(dir)).to.deep.equal({source: path, policy: DEFAULT_POLICY})
    })

    it('keeps an existing cleanroom.yaml unless forced', async () => {
      const dir = await dirs.make()
      const path = join(dir, 'cleanroom.yaml')
      await writeFile(path, 'version: 1 # mine\n')
      const error = await writePolicyFile(dir, renderPolicyTemplate(), false).catch((error: unknown) => error)
      expect(error).to.be.instanceOf(CleanroomError).with.property('code', 'policy_exists')
      expect((error as CleanroomError).message).to.equal(`a policy already exists at ${path}`)
      expect((error as CleanroomError).suggestions).to.deep.equal([
        'Keep it and check it with: cleanroom policy validate',
        'Replace it with a new cleanroom.yaml: cleanroom policy init --force',
      ])
      expect(await readFile(path, 'utf8')).to.equal('version: 1 # mine\n')

      await writePolicyFile(dir, renderPolicyTemplate(), true)
      expect(await readFile(path, 'utf8')).to.equal(renderPolicyTemplate())
    })

    it('does not silently shadow an existing .buildkite/cleanroom.yaml', async () => {
      const dir = await dirs.make()
      await mkdir(join(dir, '.buildkite'))
      await writeFile(join(dir, '.buildkite', 'cleanroom.yaml'), 'version: 1\n')
      const error = await writePolicyFile(dir, renderPolicyTemplate(), false).catch((error: unknown) => error)
      expect(error).to.be.instanceOf(CleanroomError).with.property('message', `a policy already exists at ${join(dir, '.buildkite', 'cleanroom.yaml')}`)
    })
  })
})
