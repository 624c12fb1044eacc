import {expect} from 'chai'
import {execa} from 'execa'
import {mkdir, symlink, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {redactedGitConfigOf, redactGitConfig} from '../../src/sandbox/git-config.js'
import {tempDirs} from '../helpers/tmp.js'

const SECRET = 'ghp_S3cr3t'

describe('the .git/config a sandbox sees', () => {
  const dirs = tempDirs('cleanroom-git-config-')
  afterEach(() => dirs.cleanup())

  /** What git itself reads from `text`: `git config --list` of that file alone. */
  async function gitReads(text: string): Promise<string[]> {
    const file = join(await dirs.make(), 'config')
    await writeFile(file, text)
    const {stdout} = await execa('git', ['config', '--file', file, '--list'], {env: {HOME: '/nonexistent', GIT_CONFIG_NOSYSTEM: '1'}})
    return stdout.split('\n').filter(Boolean)
  }

  it('keeps a config with nothing to redact byte for byte', () => {
    const text = '[core]\n\tbare = false # not a URL: https://example.com/x\n[remote "origin"]\n\turl = git@github.com:acme/app.git\n\tfetch = +refs/heads/*:refs/remotes/origin/*\n'
    expect(redactGitConfig(text)).to.equal(text)
  })

  it('takes the userinfo out of every URL, wherever git reads one, and keeps the rest as git reads it', async () => {
    const text = [
      '[core]',
      '\trepositoryformatversion = 0',
      '[remote "origin"]',
      `\turl = https://x-access-token:${SECRET}@github.com/acme/app.git`,
      `\tpushurl = "https://${SECRET}@github.com/acme/app.git" ; a comment`,
      '\tfetch = +refs/heads/*:refs/remotes/origin/*',
      `[remote.legacy] url = ssh://git:${SECRET}@host.example/x.git`,
      // A value split over two lines: the token is only whole once git joins them.
      `[submodule "lib"]\n\turl = https://user:${SECRET.slice(0, 4)}\\\n${SECRET.slice(4)}@example.com/lib.git`,
      `[url "https://${SECRET}@github.com/"]`,
      '\tinsteadOf = https://github.com/',
      `[http]\n\tproxy = http://proxyuser:${SECRET}@proxy.example:3128`,
      `# https://someone:${SECRET}@example.com/ in a comment`,
      '',
    ].join('\n')
    const redacted = redactGitConfig(text)
    expect(redacted).to.not.include(SECRET).and.not.include(SECRET.slice(4))
    expect(await gitReads(redacted)).to.deep.equal([
      'core.repositoryformatversion=0',
      'remote.origin.url=https://github.com/acme/app.git',
      'remote.origin.pushurl=https://github.com/acme/app.git',
      'remote.origin.fetch=+refs/heads/*:refs/remotes/origin/*',
      'remote.legacy.url=ssh://host.example/x.git',
      'submodule.lib.url=https://example.com/lib.git',
      'url.https://github.com/.insteadof=https://github.com/',
      'http.proxy=http://proxy.example:3128',
    ])
  })

  it('drops every credential section and http.extraHeader, keeping the sections around them', async () => {
    const text = [
      '[credential]',
      '\thelper = store',
      `[credential "https://github.com"]`,
      `\tusername = ${SECRET}`,
      '[http "https://github.com/"]',
      `\textraHeader = AUTHORIZATION: basic ${SECRET}`,
      '\tsslVerify = false',
      '[user]',
      '\tname = Someone',
      '',
    ].join('\n')
    const redacted = redactGitConfig(text)
    expect(redacted).to.not.include(SECRET)
    expect(await gitReads(redacted)).to.deep.equal(['http.https://github.com/.sslverify=false', 'user.name=Someone'])
  })

  it('shows a config git could not parse as empty', () => {
    expect(redactGitConfig(`[remote "origin"\n\turl = https://a:${SECRET}@h/x\n`)).to.equal('')
    expect(redactGitConfig(`[core]\n\tx = "unterminated https://a:${SECRET}@h\n`)).to.equal('')
  })

  it('reads only a regular .git/config in a real .git directory (no symlink is followed)', async () => {
    const dir = await dirs.make()
    const withToken = `[remote "origin"]\n\turl = https://a:${SECRET}@h/x\n`
    const repo = join(dir, 'repo')
    await mkdir(join(repo, '.git'), {recursive: true})
    await writeFile(join(repo, '.git', 'config'), withToken)
    expect(await redactedGitConfigOf(repo)).to.equal('[remote "origin"]\n\turl = "https://h/x"\n')

    const elsewhere = join(dir, 'elsewhere')
    await mkdir(join(elsewhere, '.git'), {recursive: true})
    await writeFile(join(elsewhere, '.git', 'config'), withToken)
    const linkedDir = join(dir, 'linked-dir')
    await mkdir(linkedDir)
    await symlink(join(elsewhere, '.git'), join(linkedDir, '.git'))
    const linkedFile = join(dir, 'linked-file')
    await mkdir(join(linkedFile, '.git'), {recursive: true})
    await symlink(join(elsewhere, '.git', 'config'), join(linkedFile, '.git', 'config'))
    const worktree = join(dir, 'worktree')
    await mkdir(worktree)
    await writeFile(join(worktree, '.git'), 'gitdir: /elsewhere\n')
    for (const workspace of [linkedDir, linkedFile, worktree, join(dir, 'none')]) expect(await redactedGitConfigOf(workspace), workspace).to.equal(undefined)
  })
})
