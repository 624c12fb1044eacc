import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {chmod, mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {buildAgentScript, defaultTest, shellQuote} from '../../src/agents/script.js'
import {tempDirs} from '../helpers/tmp.js'

/** Runs a script the way the sandbox does (a POSIX `sh -c`), capturing raw bytes. */
function runShell(script: string, cwd: string): {status: number | null; stdout: Buffer; stderr: string} {
  const result = spawnSync('/bin/sh', ['-c', script], {cwd, encoding: 'buffer'})
  if (result.error) throw result.error
  return {status: result.status, stdout: result.stdout, stderr: result.stderr.toString('utf8')}
}

/** An executable that prints each of its arguments followed by a NUL byte. */
async function writeFakeAgent(path: string): Promise<void> {
  await writeFile(path, `#!/bin/sh\nprintf '%s\\0' "$@"\n`)
  await chmod(path, 0o755)
}

const TRICKY_ARGS = [
  "it's broken",
  'fix $PATH',
  '$(id)',
  '`id`',
  'two  spaces',
  '',
  String.raw`back\slash \n`,
  'line one\nline two',
  'ünïcødé ✓ 日本',
  '"double"',
  '*',
  '--json',
  '--',
  '-e',
]

describe('agent script', () => {
  const tmp = tempDirs('cleanroom-script-')
  afterEach(() => tmp.cleanup())

  describe('shellQuote', () => {
    it('quotes as the Go tool does', () => {
      expect(shellQuote("it's broken")).to.equal(`'it'"'"'s broken'`)
      expect(shellQuote('fix $PATH')).to.equal("'fix $PATH'")
      expect(shellQuote('')).to.equal("''")
      expect(shellQuote(String.raw`a\b`)).to.equal(String.raw`'a\b'`)
      expect(shellQuote('a\nb')).to.equal("'a\nb'")
      expect(shellQuote('ünï ✓')).to.equal("'ünï ✓'")
      expect(shellQuote("''")).to.equal(`''"'"''"'"''`)
    })

    it('gives each string back byte for byte through a real shell', async () => {
      const dir = await tmp.make()
      const {stdout} = runShell(`printf '%s\\0' ${TRICKY_ARGS.map((arg) => shellQuote(arg)).join(' ')}`, dir)
      expect(stdout.toString('utf8').split('\0').slice(0, -1)).to.deep.equal(TRICKY_ARGS)
    })
  })

  describe('buildAgentScript', () => {
    const spec = {name: 'codex', command: 'codex', test: "command -v 'codex' >/dev/null 2>&1"}

    it('writes the seed script without install', () => {
      expect(buildAgentScript(spec, ['exec', "it's", 'fix $PATH', ''])).to.equal(
        [
          'set -e',
          "if ! (command -v 'codex' >/dev/null 2>&1); then",
          "printf '%s\\n' 'cleanroom: agent command not found: codex' >&2",
          'exit 127',
          'fi',
          `exec codex 'exec' 'it'"'"'s' 'fix $PATH' ''`,
        ].join('\n'),
      )
    })

    it('writes the seed script with install', () => {
      const withInstall = {...spec, install: 'npm install -g @openai/codex'}
      expect(buildAgentScript(withInstall, [])).to.equal(
        [
          'set -e',
          "if ! (command -v 'codex' >/dev/null 2>&1); then",
          'npm install -g @openai/codex',
          'fi',
          "if ! (command -v 'codex' >/dev/null 2>&1); then",
          "printf '%s\\n' 'cleanroom: agent command not found: codex' >&2",
          'exit 127',
          'fi',
          'exec codex',
        ].join('\n'),
      )
    })

    it('leaves out a blank install', () => {
      expect(buildAgentScript({...spec, install: '  '}, [])).to.equal(buildAgentScript(spec, []))
    })

    it('strips one leading -- and only one', () => {
      expect(buildAgentScript(spec, ['--', 'exec']).split('\n').at(-1)).to.equal("exec codex 'exec'")
      expect(buildAgentScript(spec, ['--', '--', 'exec']).split('\n').at(-1)).to.equal("exec codex '--' 'exec'")
      expect(buildAgentScript(spec, ['exec', '--']).split('\n').at(-1)).to.equal("exec codex 'exec' '--'")
    })

    it('falls back to the name for an empty command and to the default test for an empty test', () => {
      expect(buildAgentScript({name: 'codex', command: '', test: ''}, [])).to.equal(buildAgentScript(spec, []))
    })

    it('passes every argument to the agent byte for byte', async () => {
      const dir = await tmp.make()
      const agent = join(dir, 'my agent')
      await writeFakeAgent(agent)
      const command = shellQuote(agent)
      const script = buildAgentScript({name: 'fake', command, test: defaultTest(command)}, ['--', ...TRICKY_ARGS])

      const result = runShell(script, dir)

      expect(result.stderr).to.equal('')
      expect(result.status).to.equal(0)
      expect(result.stdout.toString('utf8').split('\0').slice(0, -1)).to.deep.equal(TRICKY_ARGS)
    })

    it('exits 127 with the seed message when the agent is missing', async () => {
      const dir = await tmp.make()
      const command = 'cleanroom-test-no-such-agent --flag'
      const script = buildAgentScript({name: 'ghost', command, test: defaultTest(command)}, ['x'])

      const result = runShell(script, dir)

      expect(result.status).to.equal(127)
      expect(result.stderr).to.equal('cleanroom: agent command not found: ghost\n')
      expect(result.stdout.length).to.equal(0)
    })

    it('runs install only when the test fails', async () => {
      const dir = await tmp.make()
      const installed = join(dir, 'bin', 'agent')
      const command = shellQuote(installed)
      const install = `mkdir -p bin && printf '#!/bin/sh\\necho "ran $1"\\n' > bin/agent && chmod +x bin/agent && echo installing >&2`
      const script = buildAgentScript({name: 'fake', command, test: defaultTest(command), install}, ['one'])

      const first = runShell(script, dir)
      expect(first).to.deep.include({status: 0, stderr: 'installing\n'})
      expect(first.stdout.toString()).to.equal('ran one\n')

      const second = runShell(script, dir)
      expect(second).to.deep.include({status: 0, stderr: ''})
      expect(second.stdout.toString()).to.equal('ran one\n')
    })

    it('exits 127 when install runs but leaves the agent missing', async () => {
      const dir = await tmp.make()
      const command = shellQuote(join(dir, 'never-installed'))
      const script = buildAgentScript({name: 'fake', command, test: defaultTest(command), install: 'echo trying >&2'}, [])

      const result = runShell(script, dir)

      expect(result.status).to.equal(127)
      expect(result.stderr).to.equal('trying\ncleanroom: agent command not found: fake\n')
    })

    it('stops at a failing install (set -e)', async () => {
      const dir = await tmp.make()
      const command = shellQuote(join(dir, 'never-installed'))
      const script = buildAgentScript({name: 'fake', command, test: defaultTest(command), install: 'exit 3'}, [])

      expect(runShell(script, dir).status).to.equal(3)
    })
  })

  describe('an agent run from its npm package', () => {
    const tmp = tempDirs('cleanroom-npm-agent-')
    after(() => tmp.cleanup())

    /**
     * A sandbox-like home and PATH: a fake `npm` that logs its arguments and, like
     * `npm exec`, installs the package into ~/.npm/_npx/<hash>/node_modules and runs its bin.
     */
    async function npmHome(): Promise<{home: string; run: (args: string[], path?: string) => {status: number | null; stdout: string; stderr: string; npm: string}}> {
      const home = await tmp.make()
      const tools = join(home, 'tools')
      await mkdir(tools)
      await writeFile(
        join(tools, 'npm'),
        [
          '#!/bin/sh',
          'echo "$*" >> "$HOME/npm.log"',
          'dir="$HOME/.npm/_npx/0a1b/node_modules"',
          'mkdir -p "$dir/@acme/code" "$dir/.bin"',
          `printf '#!/bin/sh\\necho "acme from cache: $*"\\n' > "$dir/.bin/acme" && chmod +x "$dir/.bin/acme"`,
          'shift 5; exec "$dir/.bin/$@"',
          '',
        ].join('\n'),
      )
      await chmod(join(tools, 'npm'), 0o755)
      const run = (args: string[], path = `${tools}:/usr/bin:/bin`) => {
        const script = buildAgentScript({name: 'acme', command: 'acme', test: defaultTest('acme', '@acme/code'), package: '@acme/code'}, args)
        const result = spawnSync('/bin/sh', ['-c', script], {cwd: home, env: {HOME: home, PATH: path}, encoding: 'utf8'})
        const npm = spawnSync('cat', [join(home, 'npm.log')], {encoding: 'utf8'}).stdout
        return {status: result.status, stdout: result.stdout, stderr: result.stderr, npm}
      }
      return {home, run}
    }

    it('fetches it through npm once, then runs the cached copy without npm until a day has passed', async () => {
      const {home, run} = await npmHome()
      const first = run(['--version', "it's"])
      expect(first).to.deep.include({status: 0, stdout: "acme from cache: --version it's\n", stderr: 'cleanroom: installing @acme/code@latest…\n'})
      expect(first.npm).to.equal("exec --yes --package @acme/code@latest -- acme --version it's\n")

      const cached = run(['again'])
      expect(cached).to.deep.include({status: 0, stdout: 'acme from cache: again\n', stderr: ''})
      expect(cached.npm, 'npm did not run again').to.equal(first.npm)

      // A day later npm asks the registry again (quietly: the agent is already there), and the clock restarts.
      spawnSync('touch', ['-d', '25 hours ago', join(home, '.cache/cleanroom/npm-latest-checked/acme')])
      const stale = run(['later'])
      expect(stale).to.deep.include({status: 0, stdout: 'acme from cache: later\n', stderr: ''})
      expect(stale.npm.trim().split('\n')).to.have.length(2)
      expect(run(['next']).npm.trim().split('\n')).to.have.length(2)
    })

    it('runs the command from PATH when the sandbox has it, and says it is missing when neither it nor npm is there', async () => {
      const {home, run} = await npmHome()
      const bin = join(home, 'bin')
      await mkdir(bin)
      await writeFile(join(bin, 'acme'), '#!/bin/sh\necho "installed acme: $*"\n')
      await chmod(join(bin, 'acme'), 0o755)
      expect(run(['x'], `${bin}:${join(home, 'tools')}:/usr/bin:/bin`)).to.deep.include({status: 0, stdout: 'installed acme: x\n', npm: ''})
      expect(run(['x'], join(home, 'nothing-here'))).to.deep.include({status: 127, stderr: 'cleanroom: agent command not found: acme\n'})
    })
  })

  describe('defaultTest', () => {
    it('checks the first word of the command, not the agent name', () => {
      expect(defaultTest('codex')).to.equal("command -v 'codex' >/dev/null 2>&1")
      expect(defaultTest('npm exec --yes --package @openai/codex@latest -- codex')).to.equal("command -v 'npm' >/dev/null 2>&1")
      expect(defaultTest('  claude --dangerously-skip-permissions')).to.equal("command -v 'claude' >/dev/null 2>&1")
      expect(defaultTest(String.raw`my\ agent run`)).to.equal("command -v 'my agent' >/dev/null 2>&1")
    })

    it('tests a path for an executable file', () => {
      expect(defaultTest('/usr/local/bin/codex exec')).to.equal("test -f '/usr/local/bin/codex' && test -x '/usr/local/bin/codex'")
      expect(defaultTest(`'/opt/my agent/bin/run' --x`)).to.equal("test -f '/opt/my agent/bin/run' && test -x '/opt/my agent/bin/run'")
      expect(defaultTest(`"/opt/it's"/run`)).to.equal(`test -f '/opt/it'"'"'s/run' && test -x '/opt/it'"'"'s/run'`)
    })

    it('reuses a word the shell expands as written', () => {
      expect(defaultTest('"$HOME/bin/codex" exec')).to.equal('test -f "$HOME/bin/codex" && test -x "$HOME/bin/codex"')
      expect(defaultTest('~/bin/codex')).to.equal('test -f ~/bin/codex && test -x ~/bin/codex')
      expect(defaultTest('$CODEX_BIN exec')).to.equal('command -v $CODEX_BIN >/dev/null 2>&1')
    })

    it('gives up statically on a command substitution and fails an empty command', () => {
      expect(defaultTest('$(npm bin)/codex')).to.equal('true')
      expect(defaultTest('`which codex`')).to.equal('true')
      expect(defaultTest("'unterminated")).to.equal('true')
      expect(defaultTest('   ')).to.equal('false')
    })

    it('passes for an executable file and fails for a directory or a missing path in a real shell', async () => {
      const dir = await tmp.make()
      const agent = join(dir, 'agent dir', 'agent')
      await mkdir(join(dir, 'agent dir'))
      await writeFakeAgent(agent)
      const status = (command: string) => runShell(defaultTest(command), dir).status

      expect(status(shellQuote(agent))).to.equal(0)
      expect(status(shellQuote(join(dir, 'agent dir')))).to.not.equal(0)
      expect(status(shellQuote(join(dir, 'missing')))).to.not.equal(0)
      expect(status('sh -c true')).to.equal(0)
      expect(status('cleanroom-test-no-such-agent')).to.not.equal(0)
    })
  })
})
