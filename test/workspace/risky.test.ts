import {expect} from 'chai'

import type {TreeEntry} from '../../src/util/link-target.js'
import {assessRisks, type RiskInput, riskyReason} from '../../src/workspace/risky.js'

/** A host tree for assessRisks: paths to entries. */
const hostOf = (entries: Record<string, TreeEntry>) => async (path: string) => entries[path]

describe('risky workspace changes', () => {
  it('knows the risky paths by name, in any case', () => {
    for (const path of [
      '.github/workflows/ci.yml', '.GitHub/Workflows/ci.yml', '.buildkite/pipeline.yml', 'cleanroom.yaml', 'sub/dir/.envrc', '.bashrc', '.claude/settings.json',
      '.vscode/tasks.json', '.git/hooks/pre-commit', 'Jenkinsfile', 'jenkinsfile', 'azure-pipelines.yml', '.travis.yml', 'bitbucket-pipelines.yml', '.drone.yml',
      '.yarnrc.yml', 'packages/a/.npmrc', '.pnpmfile.cjs', '.mcp.json', '.cursor/rules/x.mdc', '.zed/tasks.json', '.idea/workspace.xml', 'AGENTS.md',
      'docs/CLAUDE.md', 'GEMINI.md', 'sub/.gitattributes', '.lfsconfig', '.gitmodules', '.tool-versions', 'mise.toml', 'Justfile', 'justfile', 'lefthook.yml',
    ]) {
      expect(riskyReason(path), path).to.be.a('string')
    }
    for (const path of ['src/cleanroom.yaml', 'github/workflows/x', 'Makefile', 'docs/.github/workflows/x.yml', 'README.md', 'sub/.lfsconfig', 'src/Jenkinsfile.md']) {
      expect(riskyReason(path), path).to.equal(undefined)
    }
  })

  it('flags everything in a directory git would take for a repository, under any name', async () => {
    const changes: RiskInput[] = [
      {path: 'vendor/lib/HEAD', sandbox: {}},
      {path: 'vendor/lib/config', sandbox: {}},
      {path: 'vendor/lib/refs/heads/main', sandbox: {}},
      {path: 'vendor/other.js', sandbox: {}},
    ]
    const risks = await assessRisks(changes, hostOf({}))
    expect([...risks.keys()].sort()).to.deep.equal(['vendor/lib/HEAD', 'vendor/lib/config', 'vendor/lib/refs/heads/main'])
    expect(risks.get('vendor/lib/config')).to.contain('git would take for a repository')
  })

  it('flags a change inside a repository-like directory the host already has', async () => {
    const risks = await assessRisks([{path: 'fixtures/bare/hooks/post-checkout', sandbox: {}}], hostOf({'fixtures/bare/HEAD': 'other', 'fixtures/bare/objects': 'directory'}))
    expect(risks.has('fixtures/bare/hooks/post-checkout')).to.equal(true)
  })

  it('flags symlinks whose resolved target leaves the repository, through links the change makes or the host has', async () => {
    const changes: RiskInput[] = [
      {path: 'key', sandbox: {link: '/root/.ssh/id_ed25519'}},
      {path: 'etc', sandbox: {link: '../../../../etc'}},
      {path: 's', sandbox: {link: '.'}},
      {path: 'climb', sandbox: {link: 's/s/s/../x'}},
      {path: 'through-host', sandbox: {link: 'up/x'}},
      {path: 'inside', sandbox: {link: 'src/../README.md'}},
      {path: 'sub/peer', sandbox: {link: '../s/README.md'}},
    ]
    const risks = await assessRisks(changes, hostOf({up: {symlink: '..'}, src: 'directory'}))
    expect([...risks.keys()].sort()).to.deep.equal(['climb', 'etc', 'key', 'through-host'])
    expect(risks.get('key')).to.equal('a symlink leading outside the repository (-> /root/.ssh/id_ed25519)')
  })
})
