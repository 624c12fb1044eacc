import {expect} from 'chai'

import {codeEntries, installScripts, notAPluginProblem} from '../../src/plugins/code.js'

const none = () => false

describe('what counts as code in a plugin', () => {
  it('finds nothing in a data-only plugin (the built-in ones have type and files, which are data)', () => {
    expect(codeEntries({name: 'p', type: 'module', files: ['README.md'], oclif: {}, cleanroom: {agent: {name: 'p'}}}, none)).to.deep.equal([])
  })

  it('names each oclif entry that makes oclif import a module or load another package', () => {
    const pjson = {
      oclif: {commands: './lib/commands', hooks: {init: './init.js', prerun: './p.js'}, plugins: ['x'], devPlugins: ['y'], jitPlugins: {z: '1'}, helpClass: './help.js', topics: {}, bin: 'x'},
    }
    expect(codeEntries(pjson, none)).to.deep.equal(['oclif.commands', 'oclif.hooks (init, prerun)', 'oclif.plugins', 'oclif.devPlugins', 'oclif.jitPlugins', 'oclif.helpClass'])
  })

  it('names main, exports and bin (they decide where oclif finds the plugin, or what npm links), and every kind of dependency', () => {
    const pjson = {
      oclif: {},
      main: '../../../elsewhere/index.js',
      exports: {'.': './x.js'},
      bin: {git: './git.js'},
      directories: {bin: './bin'},
      dependencies: {'left-pad': '1'},
      optionalDependencies: {a: '1'},
      peerDependencies: {b: '1'},
      bundleDependencies: ['c'],
    }
    expect(codeEntries(pjson, none)).to.deep.equal([
      'main',
      'exports',
      'bin',
      'directories.bin',
      'dependencies: left-pad',
      'optionalDependencies: a',
      'peerDependencies: b',
      'bundleDependencies: c',
    ])
  })

  it('names an oclif manifest found among the files: oclif reads commands from it even when package.json names none', () => {
    const files = new Set(['oclif.manifest.json', '.oclif.manifest.json', 'node_modules'])
    expect(codeEntries({oclif: {}}, (path) => files.has(path))).to.deep.equal([
      'oclif.manifest.json (commands oclif would load)',
      '.oclif.manifest.json (commands oclif would load)',
    ])
  })

  it('ignores empty declarations', () => {
    expect(codeEntries({oclif: {hooks: {}, plugins: [], commands: ''}, dependencies: {}, main: ''}, none)).to.deep.equal([])
  })

  it('lists the install scripts npm would run, and binding.gyp', () => {
    expect(installScripts({scripts: {preinstall: 'x', postinstall: 'y', test: 'z', prepare: 'w'}}, none)).to.deep.equal(['preinstall', 'postinstall', 'prepare'])
    expect(installScripts({}, (path) => path === 'binding.gyp')).to.deep.equal(['install (node-gyp rebuild for binding.gyp)'])
  })

  it('says what is missing from a package that is no oclif plugin', () => {
    expect(notAPluginProblem({name: 'x'})).to.match(/^its package.json has no "oclif" key/)
    expect(notAPluginProblem({oclif: 'yes'})).to.match(/is not an object/)
    expect(notAPluginProblem({oclif: {}})).to.equal(undefined)
  })
})
