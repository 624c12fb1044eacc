import {expect} from 'chai'
import {readdirSync, readFileSync} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {validatePluginAgent} from '../../src/agents/registry.js'
import {loadRuntimeConfig} from '../../src/config/load.js'
import {CleanroomError} from '../../src/errors/index.js'
import {parsePackageJsonBytes, readPackageJsonFile} from '../../src/plugins/package-json.js'
import {loadPolicy} from '../../src/policy/load.js'
import {apiRequest, testDaemonSuite} from '../helpers/daemon.js'
import {type Mutant, mutants} from '../helpers/mutate.js'
import {tempDirs} from '../helpers/tmp.js'

/**
 * Seeded mutations of valid policies, runtime configs and agent plugin specs
 * (wrong types, huge numbers, deep nesting, alias bombs, undefined aliases,
 * invalid UTF-8, NUL, byte order marks, 10 MB files, …): each must be accepted
 * or answered with a typed error naming the file and a position, within a CPU
 * time bound. CPU time, not wall time: on a shared machine wall time measures
 * the neighbours; a quadratic parse or a runaway alias costs seconds of CPU.
 * Run other cases with CLEANROOM_FUZZ_SEED=<n>.
 */
const SEED = Number(process.env.CLEANROOM_FUZZ_SEED ?? 20_260_530)
const CPU_BOUND_MS = 2000
const FIXTURES = fileURLToPath(new URL('../fixtures/policy/valid/', import.meta.url))
const PLUGINS = fileURLToPath(new URL('../../plugins/', import.meta.url))

const POLICY_BASES = readdirSync(FIXTURES)
  .filter((name) => name.endsWith('.yaml'))
  .sort()
  .map((name) => ({name, text: readFileSync(join(FIXTURES, name), 'utf8')}))
const CONFIG_BASES = [
  {name: 'backends', text: 'default_backend: gvisor\nbackends:\n  linux-ns:\n    bwrap_path: /usr/bin/bwrap\n  gvisor:\n    runsc_path: runsc\n    platform: ptrace\n'},
  {
    name: 'agents',
    text: [
      'agents:',
      '  mine:',
      '    command: my-agent --fast',
      '    test: command -v my-agent',
      '    install: npm i -g my-agent',
      '    package: my-agent',
      '    credentials:',
      '      - {source: ~/.mine/token, target: ~/.mine/token}',
      '    network:',
      '      - {host: api.mine.example, ports: [443], reason: its API}',
      '    env: {MINE_MODE: sandbox}',
      '',
    ].join('\n'),
  },
  {name: 'empty', text: '# nothing set\n'},
]
const PLUGIN_BASES = readdirSync(PLUGINS)
  .sort()
  .map((name) => ({name, text: readFileSync(join(PLUGINS, name, 'package.json'), 'utf8')}))

interface FuzzCase {
  label: string
  mutant: Mutant
}

/** `total` cases spread over `bases`, each base with its own seed, made as they are iterated. */
function* cases(bases: {name: string; text: string}[], kind: 'yaml' | 'json', total: number, offset: number): Generator<FuzzCase> {
  const perBase = Math.ceil(total / bases.length)
  for (const [b, base] of bases.entries()) {
    let i = 0
    for (const mutant of mutants(SEED + offset + b * 1000, base.text, kind, perBase)) yield {label: `${base.name} case ${i++}: ${mutant.name}`, mutant}
  }
}

const POLICY_COUNT = 260
const policyCases = () => cases(POLICY_BASES, 'yaml', POLICY_COUNT, 0)
const configCases = () => cases(CONFIG_BASES, 'yaml', 150, 100_000)
const pluginCases = () => cases(PLUGIN_BASES, 'json', 120, 200_000)

/** CPU milliseconds `run` took, this process's threads together. */
async function cpuTime<T>(run: () => Promise<T>): Promise<{result: T | Error; ms: number}> {
  const start = process.cpuUsage()
  let result: T | Error
  try {
    result = await run()
  } catch (error) {
    result = error as Error
  }
  const used = process.cpuUsage(start)
  return {result, ms: (used.user + used.system) / 1000}
}

/** The typed error of a refused file: its code, and every issue naming `file` at a line and column. */
function expectFileError(error: unknown, code: string, file: string, context: string): void {
  expect(error, context).to.be.instanceOf(CleanroomError)
  const typed = error as CleanroomError
  expect(typed.code, `${context}: ${typed.message}`).to.equal(code)
  const issues = (typed.details as {issues?: {file: string; line: number; col: number}[]}).issues ?? []
  expect(issues, `${context}: ${typed.message}`).to.not.be.empty
  for (const issue of issues) {
    expect(issue.file, context).to.equal(file)
    expect(issue.line, context).to.be.at.least(1)
    expect(issue.col, context).to.be.at.least(1)
  }
  expect(typed.message.split('\n')[1], context).to.match(new RegExp(`^${file.replaceAll(/[.*+?^${}()|[\]\\]/g, '\\$&')}:\\d+:\\d+ `))
}

describe(`parsing fuzz (seed ${SEED}, CLEANROOM_FUZZ_SEED to change)`, function () {
  this.timeout(600_000)
  const dirs = tempDirs('cleanroom-fuzz-')
  after(() => dirs.cleanup())

  it(`answers ${POLICY_COUNT}+ mutated policies with a compiled policy or policy_invalid at file:line:col`, async () => {
    const dir = await dirs.make()
    const file = join(dir, 'cleanroom.yaml')
    let count = 0
    for (const {label, mutant} of policyCases()) {
      count++
      const context = `seed ${SEED}, policy ${label}`
      await writeFile(file, mutant.bytes)
      const {result, ms} = await cpuTime(() => loadPolicy(dir))
      expect(ms, `${context}: CPU time`).to.be.below(CPU_BOUND_MS)
      if (result instanceof Error) expectFileError(result, 'policy_invalid', file, context)
      else expect(result.policy.hash, context).to.match(/^[\da-f]{64}$/)
    }
    expect(count).to.be.at.least(POLICY_COUNT)
  })

  it('answers 150 mutated runtime configs with a config or config_invalid at file:line:col', async () => {
    const file = join(await dirs.make(), 'config.yaml')
    let count = 0
    for (const {label, mutant} of configCases()) {
      count++
      const context = `seed ${SEED}, config ${label}`
      await writeFile(file, mutant.bytes)
      const {result, ms} = await cpuTime(() => loadRuntimeConfig(file))
      expect(ms, `${context}: CPU time`).to.be.below(CPU_BOUND_MS)
      if (result instanceof Error) expectFileError(result, 'config_invalid', file, context)
      else expect(result.exists, context).to.equal(true)
    }
    expect(count).to.be.at.least(150)
  })

  it('answers 120 mutated plugin package.json files with an agent or agent_spec_invalid naming the plugin and field', async () => {
    const dir = await dirs.make()
    let count = 0
    for (const {label, mutant} of pluginCases()) {
      count++
      const context = `seed ${SEED}, plugin ${label}`
      await writeFile(join(dir, 'package.json'), mutant.bytes)
      const {result, ms} = await cpuTime(async () => {
        // Read as `cleanroom plugins link` reads it; the registry checks what oclif parsed.
        const read = await readPackageJsonFile(join(dir, 'package.json')).then((bytes) => ({manifest: parsePackageJsonBytes(bytes)})).catch((error: unknown) => ({unreadable: String(error)}))
        if ('unreadable' in read) return read
        return {checked: validatePluginAgent({name: 'fuzz-plugin', version: '1.0.0', type: 'user', pjson: read.manifest})}
      })
      expect(ms, `${context}: CPU time`).to.be.below(CPU_BOUND_MS)
      expect(result, context).to.not.be.instanceOf(Error)
      if (result instanceof Error || 'unreadable' in result) continue
      const {checked} = result
      if (checked instanceof CleanroomError) {
        expect(checked.code, context).to.equal('agent_spec_invalid')
        expect(checked.message, context).to.match(/^plugin fuzz-plugin@1\.0\.0 declares an invalid agent and is skipped: cleanroom/)
        const issues = (checked.details as {issues: {path: string}[]}).issues
        expect(issues.length, context).to.be.within(1, 10)
        for (const issue of issues) expect(issue.path, context).to.match(/^cleanroom/)
      } else {
        expect(checked.name, context).to.match(/^[a-z][a-z0-9-]*$/)
      }
    }
    expect(count).to.be.at.least(120)
  })

  describe('the same policies through the daemon API', () => {
    const suite = testDaemonSuite('cleanroom-fuzz-api-')

    it(`answers POST /v1/sandboxes {"repository"} for each of them with what the library says, never a 5xx`, async () => {
      const repo = join(suite.dir, 'repo')
      await mkdir(repo)
      const file = join(repo, 'cleanroom.yaml')
      for (const {label, mutant} of policyCases()) {
        const context = `seed ${SEED}, policy ${label} through the API`
        await writeFile(file, mutant.bytes)
        const local = await loadPolicy(repo).catch((error: unknown) => error as CleanroomError)
        const {result, ms} = await cpuTime(() => apiRequest<{sandbox_id?: string; policy_hash?: string}>(suite.test.socketPath, 'POST', '/v1/sandboxes', JSON.stringify({repository: repo})))
        expect(ms, `${context}: CPU time`).to.be.below(CPU_BOUND_MS)
        if (result instanceof Error) throw result
        expect(result.status, `${context}: ${JSON.stringify(result.body).slice(0, 300)}`).to.be.below(500)
        if (local instanceof CleanroomError) {
          expect(result.status, context).to.equal(400)
          expect(result.body.error, context).to.deep.include({code: 'policy_invalid', message: local.message})
        } else if (result.status === 422) {
          expect(result.body.error?.code, context).to.equal('backend_capability_mismatch')
        } else if (result.status === 409) {
          // A policy naming an image not in the (empty) cache: the CLI would pull it.
          expect(result.body.error?.code, context).to.equal('image_not_pulled')
        } else {
          expect(result.status, `${context}: ${JSON.stringify(result.body).slice(0, 300)}`).to.equal(201)
          expect(result.body.policy_hash, context).to.equal(local.policy.hash)
          await suite.test.client.removeSandbox(result.body.sandbox_id!)
        }
      }
    })
  })
})
