import {Parser} from '@oclif/core'
import {expect} from 'chai'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {separateAgentArgs, splitAgentArgv} from '../../src/agents/argv.js'
import {buildAgentScript} from '../../src/agents/script.js'
import Agent from '../../src/commands/agent/index.js'
import {type ManifestFlag} from '../../src/launch/argv.js'
import {PROJECT_ROOT} from '../helpers/cli.js'

const FLAGS = {...Agent.baseFlags, ...Agent.flags}
const manifest = JSON.parse(readFileSync(join(PROJECT_ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {flags: Record<string, ManifestFlag>}>}
const manifestFlags = manifest.commands.agent!.flags

/** What the agent's command line ends with, given what followed `cleanroom agent` (the script's last line, unquoted). */
function agentArgs(argv: string[]): string[] {
  const {afterName} = splitAgentArgv(argv, FLAGS)
  const last = buildAgentScript({name: 'probe', command: 'probe', test: 'true'}, afterName).split('\n').at(-1)!
  return [...last.matchAll(/'((?:[^']|'"'"')*)'/g)].map((match) => match[1]!.replaceAll(`'"'"'`, "'"))
}

// Each line as typed after `cleanroom agent`: the agent, cleanroom's flags, and what the agent gets.
const LINES: {argv: string[]; name: string; flags: Record<string, unknown>; agent: string[]}[] = [
  {argv: ['probe', 'a', 'a', 'b', 'a', 'b'], name: 'probe', flags: {}, agent: ['a', 'a', 'b', 'a', 'b']},
  {argv: ['probe', '--yolo', '--model', 'gpt-5'], name: 'probe', flags: {}, agent: ['--yolo', '--model', 'gpt-5']},
  {argv: ['probe', '--help'], name: 'probe', flags: {}, agent: ['--help']},
  {argv: ['probe', '-c', 'DIR'], name: 'probe', flags: {}, agent: ['-c', 'DIR']},
  {argv: ['probe', '--sandbox-id', 'cr_X', '--update'], name: 'probe', flags: {}, agent: ['--sandbox-id', 'cr_X', '--update']},
  {argv: ['--', 'probe', 'a', 'b'], name: 'probe', flags: {}, agent: ['a', 'b']},
  {argv: ['probe', '--', 'exec', '--json'], name: 'probe', flags: {}, agent: ['exec', '--json']},
  {argv: ['probe', '--', '--', 'x'], name: 'probe', flags: {}, agent: ['--', 'x']},
  {argv: ['probe', 'x', '--'], name: 'probe', flags: {}, agent: ['x', '--']},
  {argv: ['-c', '/repo', 'probe', '-c', 'z'], name: 'probe', flags: {chdir: '/repo'}, agent: ['-c', 'z']},
  {argv: ['--sandbox-id', 'cr_X', 'probe', 'exec', 'probe'], name: 'probe', flags: {'sandbox-id': 'cr_X'}, agent: ['exec', 'probe']},
  {argv: ['--sandbox-id=cr_X', '--update', 'probe'], name: 'probe', flags: {'sandbox-id': 'cr_X', update: true}, agent: []},
  {argv: ['-c/repo', '--backend', 'linux-ns', '--dangerously-allow-all', 'probe', "it's", ''], name: 'probe', flags: {chdir: '/repo', backend: 'linux-ns', 'dangerously-allow-all': true}, agent: ["it's", '']},
  {argv: ['--host', 'unix:///run/x.sock', '-c=/repo', 'probe', '--host', 'h'], name: 'probe', flags: {host: 'unix:///run/x.sock', chdir: '/repo'}, agent: ['--host', 'h']},
]

describe('cleanroom agent: what is cleanroom\'s, and what goes to the agent', () => {
  for (const line of LINES) {
    it(`agent ${line.argv.join(' ')}`, async () => {
      const split = splitAgentArgv(line.argv, FLAGS)
      expect(split.name).to.equal(line.name)
      expect(agentArgs(line.argv), 'what the agent receives').to.deep.equal(line.agent)
      // oclif parses cleanroom's part as it would the whole line, and finds the same flags and name.
      const parsed = await Parser.parse(split.cleanroom, {flags: FLAGS, args: Agent.args, strict: true})
      expect(parsed.args.name).to.equal(line.name)
      expect(Object.fromEntries(Object.entries(parsed.flags).filter(([, value]) => value !== undefined && value !== false))).to.deep.equal(line.flags)
      // The line bin/run.js hands oclif gives the agent the same, and splits the same way with the manifest's flags.
      const separated = separateAgentArgs(line.argv, manifestFlags)
      expect(agentArgs(separated)).to.deep.equal(line.agent)
      expect(splitAgentArgv(separated, manifestFlags).cleanroom).to.deep.equal(split.cleanroom)
    })
  }

  it('puts a -- after the name for oclif, so the agent\'s --help never reaches oclif\'s help', () => {
    expect(separateAgentArgs(['probe', '--help'], manifestFlags)).to.deep.equal(['probe', '--', '--help'])
    expect(separateAgentArgs(['--sandbox-id', 'cr_X', 'probe', 'x'], manifestFlags)).to.deep.equal(['--sandbox-id', 'cr_X', 'probe', '--', 'x'])
    expect(separateAgentArgs(['probe', '--', 'x'], manifestFlags), 'one is there already').to.deep.equal(['probe', '--', 'x'])
    expect(separateAgentArgs(['--', 'probe', '--help'], manifestFlags), 'a -- before the name ends oclif\'s reading already').to.deep.equal(['--', 'probe', '--help'])
    expect(separateAgentArgs(['probe'], manifestFlags)).to.deep.equal(['probe'])
    expect(separateAgentArgs(['--help'], manifestFlags), 'cleanroom agent --help is cleanroom\'s').to.deep.equal(['--help'])
    expect(separateAgentArgs(['list', '--json'], manifestFlags), 'agent list is a command').to.deep.equal(['list', '--json'])
  })

  it('takes an unknown flag before the name as cleanroom\'s, for oclif to refuse by name', () => {
    expect(splitAgentArgv(['--yolo', 'probe', 'x'], FLAGS)).to.deep.include({name: 'probe', cleanroom: ['--yolo', 'probe'], afterName: ['x']})
  })

  it('splits with the flags the build wrote to the manifest, which are the command\'s', () => {
    expect(Object.keys(manifestFlags).sort()).to.deep.equal(Object.keys(FLAGS).sort())
    for (const [name, flag] of Object.entries(FLAGS)) expect(manifestFlags[name], name).to.deep.include({type: flag.type, ...(flag.char ? {char: flag.char} : {})})
  })
})
