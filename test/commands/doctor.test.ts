import {expect} from 'chai'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {isolatedEnv, PROJECT_ROOT, runCli} from '../helpers/cli.js'
import {tempDirs} from '../helpers/tmp.js'

interface Report {
  ok: boolean
  checks: {name: string; status: string; detail: string; fix?: string}[]
  capabilities: Record<string, Record<string, boolean>>
}

describe('cleanroom doctor', () => {
  const dirs = tempDirs()
  afterEach(() => dirs.cleanup())

  async function doctor(config?: string, policy?: string, extraEnv: Record<string, string> = {}): Promise<{exitCode: number; report: Report; text: string}> {
    const home = await dirs.make()
    if (config) {
      await mkdir(join(home, '.config/cleanroom'), {recursive: true})
      await writeFile(join(home, '.config/cleanroom/config.yaml'), config)
    }
    const repo = join(home, 'repo')
    await mkdir(repo)
    if (policy) await writeFile(join(repo, 'cleanroom.yaml'), policy)
    const env = {...isolatedEnv(home), ...extraEnv}
    const json = await runCli(['doctor', '--json', '-c', repo], {env})
    const text = await runCli(['doctor', '-c', repo], {env})
    return {exitCode: json.exitCode, report: JSON.parse(json.stdout) as Report, text: text.stdout}
  }

  it('passes every check on this machine and shows the capability map', async () => {
    const {exitCode, report, text} = await doctor()
    expect(exitCode).to.equal(0)
    expect(report.ok).to.equal(true)
    expect(report.checks.map((check) => check.name)).to.include.members(['os', 'node', 'namespaces', 'overlayfs', 'runtime config', 'policy', 'backend linux-ns (default)', 'daemon'])
    expect(report.checks.find((check) => check.name === 'backend linux-ns (default)')?.detail).to.match(/^bubblewrap \d+\.\d+/)
    expect(report.capabilities['linux-ns']).to.deep.include({'network.default_deny': true, 'sandbox.persistent': true, 'exec.tty': true})
    expect(text).to.match(/^ok {4}overlayfs: available$/m)
  })

  it('fails with the fix when bubblewrap is missing', async () => {
    const {exitCode, report} = await doctor('backends:\n  linux-ns:\n    bwrap_path: /nonexistent/bwrap\n')
    expect(exitCode).to.equal(1)
    const backend = report.checks.find((check) => check.name === 'backend linux-ns (default)')
    expect(backend?.status).to.equal('fail')
    expect(backend?.fix).to.contain('apt-get install -y bubblewrap')
  })

  it('names the cleanroom-nsinit in use: the prebuilt one of this platform', async () => {
    const {text} = await doctor()
    const platform = `${process.platform}-${process.arch}`
    const helper = join(PROJECT_ROOT, 'dist/libexec', platform, 'cleanroom-nsinit')
    expect(text).to.match(new RegExp(`^ok {4}backend linux-ns \\(default\\): bubblewrap \\S+; cleanroom-nsinit prebuilt for ${platform}: ${helper}$`, 'm'))
  })

  it('fails with the fix when CLEANROOM_NSINIT names no helper', async () => {
    const {exitCode, text} = await doctor(undefined, undefined, {CLEANROOM_NSINIT: '/nonexistent/cleanroom-nsinit'})
    expect(exitCode).to.equal(1)
    expect(text).to.contain('FAIL  backend linux-ns (default): CLEANROOM_NSINIT names /nonexistent/cleanroom-nsinit, which is not an executable file\n      fix: set CLEANROOM_NSINIT to the absolute path of a cleanroom-nsinit, or unset it\n')
  })

  it('accepts a policy with allow rules, which linux-ns enforces through its egress proxy', async () => {
    const {exitCode, report} = await doctor(undefined, 'version: 1\nsandbox:\n  network:\n    allow: ["api.github.com:443"]\n')
    expect(exitCode).to.equal(0)
    expect(report.capabilities['linux-ns']?.['network.allowlist_egress']).to.equal(true)
    expect(report.checks.map((check) => check.name)).not.to.include('policy vs backend')
  })

  it('accepts a policy naming an image, which linux-ns runs as the root filesystem', async () => {
    const {exitCode, report} = await doctor(undefined, `version: 1\nsandbox:\n  image:\n    ref: ghcr.io/acme/base@sha256:${'a'.repeat(64)}\n`)
    expect(exitCode).to.equal(0)
    expect(report.capabilities['linux-ns']?.['images.oci']).to.equal(true)
    expect(report.checks.map((check) => check.name)).not.to.include('policy vs backend')
  })

  it('fails, with the fix, when the default backend is gvisor and runsc is missing', async () => {
    const {exitCode, report, text} = await doctor('default_backend: gvisor\nbackends:\n  gvisor:\n    runsc_path: /nonexistent/runsc\n')
    expect(exitCode).to.equal(1)
    const check = report.checks.find((candidate) => candidate.name === 'backend gvisor (default)')
    expect([check?.status, check?.detail]).to.deep.equal(['fail', 'runsc (/nonexistent/runsc) was not found'])
    expect(check?.fix).to.contain('apt-get install -y -t bookworm-backports runsc')
    expect(text).to.contain('FAIL  backend gvisor (default)')
  })

  it('reports an invalid policy with its line', async () => {
    const {report} = await doctor(undefined, 'version: 1\nsandbox:\n  netwrk: {}\n')
    expect(report.checks.find((check) => check.name === 'policy')?.detail).to.contain('cleanroom.yaml:3:3 sandbox.netwrk: unknown key')
  })

  it('says per agent which credential mode its runs use and what this host has for it', async () => {
    const home = await dirs.make()
    await mkdir(join(home, '.codex'))
    await writeFile(join(home, '.codex/auth.json'), JSON.stringify({tokens: {access_token: 'a', refresh_token: 'r', id_token: 'i'}}))
    await mkdir(join(home, '.config/cleanroom'), {recursive: true})
    await writeFile(join(home, '.config/cleanroom/config.yaml'), 'agents:\n  opencode:\n    credentials: copy\n')
    const env = {...isolatedEnv(home), ANTHROPIC_API_KEY: 'sk-ant-test'}
    const result = await runCli(['doctor', '--json', '-c', home], {env})
    const report = JSON.parse(result.stdout) as Report
    const agent = (name: string) => report.checks.find((check) => check.name === `agent ${name} credentials`)
    expect(agent('claude')).to.deep.include({status: 'pass', detail: 'gateway: route anthropic (ANTHROPIC_API_KEY from your environment)'})
    expect(agent('codex')).to.deep.include({status: 'pass', detail: `gateway: login chatgpt (~/.codex/auth.json: present)`})
    expect(agent('gemini')).to.deep.include({status: 'warn', fix: 'set GEMINI_API_KEY or GOOGLE_API_KEY, or run `gemini` on the host'})
    expect(agent('opencode')).to.deep.include({status: 'warn', detail: 'copy mode: ~/.local/share/opencode/auth.json copied into the sandbox'})
    expect(report.ok, 'a missing login is a warning, not a failure').to.equal(true)
  })
})
