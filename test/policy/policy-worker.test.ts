import {expect} from 'chai'
import {execa} from 'execa'
import {fileURLToPath} from 'node:url'

import {CleanroomError} from '../../src/errors/index.js'
import {compilePolicyBytes, DEFAULT_POLICY} from '../../src/policy/compile.js'
import {PolicyWorker} from '../../src/policy/policy-worker.js'

const TWO_RULES = Buffer.from('version: 1\nsandbox:\n  network:\n    allow: [api.github.com:443, "*.npmjs.org:443"]\n')
/** About 19,000 values: legal, and slow enough to parse (a few hundred milliseconds) to overrun a 50 ms budget. */
const BIG = Buffer.from(`version: 1\nsandbox:\n  network:\n    allow: [${Array.from({length: 1000}, (_, i) => `h${i}.example.com:443`).join(', ')}]\nx: [${Array.from({length: 18_000}, (_, i) => i).join(', ')}]\n`)

describe('the policy worker thread', function () {
  this.timeout(60_000)
  const workers: PolicyWorker[] = []
  const worker = (options?: ConstructorParameters<typeof PolicyWorker>[0]) => {
    const made = new PolicyWorker(options)
    workers.push(made)
    return made
  }
  after(() => Promise.all(workers.map((made) => made.close())))

  it('compiles a policy as the library does, adds agent hosts, and hands back a frozen policy', async () => {
    const policy = await worker().compileFile('cleanroom.yaml', TWO_RULES, [{host: 'api.openai.com', ports: [443]}])
    const expected = compilePolicyBytes('cleanroom.yaml', TWO_RULES)
    expect(policy.allow.map((rule) => rule.host)).to.deep.equal(['*.npmjs.org', 'api.github.com', 'api.openai.com'])
    expect(policy.hash).to.not.equal(expected.hash)
    expect(Object.isFrozen(policy.allow[0])).to.equal(true)
  })

  it('answers an invalid policy with the same typed error as the library', async () => {
    const bytes = Buffer.from('version: 2\n')
    const error = (await worker()
      .compileFile('cleanroom.yaml', bytes)
      .catch((error_: unknown) => error_)) as CleanroomError
    expect(error).to.be.instanceOf(CleanroomError)
    expect(error).to.deep.include({code: 'policy_invalid', message: 'policy invalid:\ncleanroom.yaml:1:10 version: unsupported version 2: only version 1 is supported'})
    expect((error.details as {issues: unknown[]}).issues).to.have.length(1)
  })

  it('re-checks a compiled policy a client sent', async () => {
    expect(await worker().recompile(JSON.parse(JSON.stringify(DEFAULT_POLICY)))).to.deep.equal(DEFAULT_POLICY)
    const error = (await worker()
      .recompile({...JSON.parse(JSON.stringify(DEFAULT_POLICY)), network_default: 'allow'})
      .catch((error_: unknown) => error_)) as CleanroomError
    expect(error.code).to.equal('policy_invalid')
  })

  it('stops a job that runs past its time, answers it policy_invalid, and serves the next one with a new thread', async function () {
    // The budget is tight on purpose; a machine busy enough to take 50 ms over two rules gets another try.
    this.retries(2)
    const impatient = worker({timeoutMs: 50})
    const slow = await impatient.compileFile('big.yaml', BIG).catch((error_: unknown) => error_ as CleanroomError)
    expect(slow).to.be.instanceOf(CleanroomError)
    expect(slow).to.deep.include({code: 'policy_invalid', message: 'cannot check the policy big.yaml: checking it took longer than 0.05 s'})
    expect((await impatient.compileFile('cleanroom.yaml', TWO_RULES)).allow).to.have.length(2)
  })

  it('never keeps its process alive: a process that started it (as the daemon does) and one that compiled with it end by themselves', async () => {
    const module = fileURLToPath(new URL('../../src/policy/policy-worker.ts', import.meta.url))
    for (const use of ['', `await w.recompile(${JSON.stringify(DEFAULT_POLICY)}, [])`]) {
      const script = `const {PolicyWorker} = await import(${JSON.stringify(module)}); const w = new PolicyWorker(); w.start(); ${use}; console.log('done')`
      const ran = await execa(process.execPath, ['--import', 'tsx/esm', '--input-type=module', '-e', script], {timeout: 20_000, reject: false})
      expect(ran.timedOut, `${use || 'start()'}: the process was still running after 20 s`).to.equal(false)
      expect([ran.exitCode, ran.stdout.trim()], ran.stderr).to.deep.equal([0, 'done'])
    }
  })

  it('refuses the jobs still queued when it is closed', async () => {
    const closing = worker()
    const queued = [closing.compileFile('a.yaml', BIG), closing.compileFile('b.yaml', TWO_RULES)].map(async (job) => job.catch((error_: unknown) => error_ as CleanroomError))
    await closing.close()
    const [, second] = await Promise.all(queued)
    expect(second).to.be.instanceOf(CleanroomError).with.property('message', 'the policy worker was stopped')
  })
})
