import {expect} from 'chai'
import {execa} from 'execa'
import {readdirSync, readFileSync} from 'node:fs'
import {mkdir, writeFile} from 'node:fs/promises'
import {join} from 'node:path'
import {fileURLToPath} from 'node:url'

import {DEFAULT_POLICY} from '../../src/policy/compile.js'
import {apiRequest, testDaemonSuite} from '../helpers/daemon.js'

const VALID = fileURLToPath(new URL('../fixtures/policy/valid/', import.meta.url))
const GO_POLICIES = readdirSync(VALID).filter((name) => name.startsWith('go-') && name.endsWith('.yaml'))

/** The error of an API answer, with the details this file looks at. */
interface ErrorBody {
  code: string
  message: string
  details?: {issues?: {file: string; line: number; col: number}[]; keys?: Record<string, string[]>}
}

const call = async (socketPath: string, method: string, path: string, body?: string) => {
  const answer = await apiRequest(socketPath, method, path, body)
  return {status: answer.status, body: {...answer.body, error: answer.body.error as ErrorBody | undefined}}
}

describe('the daemon API and repository policies', function () {
  this.timeout(120_000)
  const suite = testDaemonSuite('cleanroom-policy-api-')

  async function repository(name: string, policy: string | Buffer): Promise<string> {
    const repo = join(suite.dir, name)
    await mkdir(repo, {recursive: true})
    await writeFile(join(repo, 'cleanroom.yaml'), policy)
    return repo
  }

  const create = (body: unknown) => call(suite.test.socketPath, 'POST', '/v1/sandboxes', JSON.stringify(body))

  describe("the Go cleanroom's example policies", () => {
    for (const name of GO_POLICIES) {
      it(`${name} validates, and the linux-ns backend refuses it at launch naming what it lacks and the key (or, needing only its image, asks for it)`, async () => {
        const repo = await repository(name, readFileSync(join(VALID, name)))
        const answer = await create({repository: repo})
        if (answer.status === 409) {
          // Everything it asks for linux-ns can do: the image is what is missing, not in the (empty) cache.
          expect(answer.body.error?.code).to.equal('image_not_pulled')
          expect(readFileSync(join(VALID, name), 'utf8')).to.contain(`ref: ${String((answer.body.error?.details as {ref?: string} | undefined)?.ref)}`)
          expect(await suite.test.client.listSandboxes(true)).to.deep.equal([])
          return
        }
        expect(answer.status, JSON.stringify(answer.body)).to.equal(422)
        const error = answer.body.error!
        expect(error.code).to.equal('backend_capability_mismatch')
        expect(error.message).to.match(/^backend linux-ns cannot enforce this policy: it lacks [a-z._]+ \([a-z._, ]+\)/)
        for (const [capability, keys] of Object.entries(error.details?.keys ?? {})) {
          for (const key of keys) expect(error.message).to.contain(key)
          expect(error.message).to.contain(capability)
        }
        expect(await suite.test.client.listSandboxes(true)).to.deep.equal([])
      })
    }

    it('refuses a compiled policy a client sends with those keys the same way', async () => {
      const policy = {...JSON.parse(JSON.stringify(DEFAULT_POLICY)), services: {docker: {required: true}}, run: {before: ['sh', '-lc', 'make deps']}}
      const answer = await create({policy, workspace_source: null})
      expect(answer.status).to.equal(422)
      expect(answer.body.error?.message).to.equal('backend linux-ns cannot enforce this policy: it lacks services.docker (sandbox.docker.required), policy.run_before (sandbox.run.before)')
    })
  })

  describe('refusals', () => {
    it('answers an invalid policy 400 policy_invalid with the file, line and column', async () => {
      const repo = await repository('invalid', 'version: 1\nsandbox:\n  resources: {memory: lots}\n')
      const answer = await create({repository: repo})
      expect(answer.status).to.equal(400)
      expect(answer.body.error?.message).to.equal(`policy invalid:\n${join(repo, 'cleanroom.yaml')}:3:23 sandbox.resources.memory: "lots" is not a byte size: write a number and a unit, such as 8GiB or 512MiB`)
      expect(answer.body.error?.details?.issues?.[0]).to.deep.include({file: join(repo, 'cleanroom.yaml'), line: 3, col: 23})
    })

    it('answers an alias bomb, an undefined alias and a fifo 400 at once', async () => {
      const bomb = ['version: 1', 'a0: &a0 [x, x, x, x, x, x, x, x, x]', ...Array.from({length: 8}, (_, i) => `a${i + 1}: &a${i + 1} [${Array.from({length: 9}, () => `*a${i}`).join(', ')}]`)].join('\n')
      expect((await create({repository: await repository('bomb', bomb)})).body.error?.message).to.match(/:6:\d+ has more than 20000 keys and values once its aliases are expanded/)
      expect((await create({repository: await repository('alias', 'version: 1\nsandbox: *x\n')})).body.error?.message).to.match(/:2:10 alias \*x has no anchor &x before it$/)
      const fifo = join(suite.dir, 'fifo')
      await mkdir(fifo)
      await execa('mkfifo', [join(fifo, 'cleanroom.yaml')])
      const answer = await create({repository: fifo})
      expect(answer.status).to.equal(400)
      expect(answer.body.error?.message).to.match(/cleanroom\.yaml:1:1 is a fifo, not a regular file/)
    })

    it('answers a request nested too deep, too many extra rules, an unknown compiled field and a huge compiled policy 400', async () => {
      const deep = await call(suite.test.socketPath, 'POST', '/v1/sandboxes', `{"policy": ${'['.repeat(500_000)}${']'.repeat(500_000)}}`)
      expect(deep).to.deep.include({status: 400})
      expect(deep.body.error?.message).to.equal('request nests objects and arrays more than 64 deep')
      const extra = Array.from({length: 257}, (_, i) => ({host: `h${i}.example`, ports: [443]}))
      expect((await create({policy: DEFAULT_POLICY, workspace_source: null, extra_allow: extra})).body.error?.code).to.equal('bad_request')
      const unknown = await create({policy: {...JSON.parse(JSON.stringify(DEFAULT_POLICY)), gpu: true}, workspace_source: null})
      expect(unknown.status).to.equal(400)
      expect(unknown.body.error?.code).to.equal('policy_invalid')
      const huge = {...JSON.parse(JSON.stringify(DEFAULT_POLICY)), allow: Array.from({length: 14_000}, (_, i) => ({host: `h${i}.example.com`, ports: [443]}))}
      expect((await create({policy: huge, workspace_source: null})).body.error).to.deep.include({
        code: 'policy_invalid',
        message: 'policy holds more than 20000 values: a policy may have at most 20000',
      })
    })
  })

  it('keeps answering /v1/ping while large policies are being parsed', async () => {
    // Four legal policies near the limits: hundreds of milliseconds of parsing each, queued in the worker.
    const big = `version: 1\nsandbox:\n  network:\n    allow: [${Array.from({length: 1000}, (_, i) => `h${i}.example.com:443`).join(', ')}]\nx: [${Array.from({length: 18_500}, (_, i) => i).join(', ')}]\n`
    const repos = await Promise.all([0, 1, 2, 3].map((i) => repository(`big-${i}`, big)))
    let createsDone = false
    const creates = Promise.all(repos.map((repo) => create({repository: repo}))).finally(() => {
      createsDone = true
    })
    const pings: {ms: number; beforeCreatesDone: boolean}[] = []
    while (!createsDone) {
      const start = performance.now()
      await call(suite.test.socketPath, 'GET', '/v1/ping')
      pings.push({ms: performance.now() - start, beforeCreatesDone: !createsDone})
    }
    const started = performance.now()
    const answers = await creates
    for (const answer of answers) expect(answer.body.error?.message, answer.body.error?.message).to.match(/ x: unknown key/)
    // With the parse on the event loop no ping could be answered before the creates were; here most are.
    const answeredDuring = pings.filter((ping) => ping.beforeCreatesDone)
    expect(answeredDuring.length, JSON.stringify(pings)).to.be.at.least(3)
    const slowest = Math.max(...answeredDuring.map((ping) => ping.ms))
    const total = pings.reduce((sum, ping) => sum + ping.ms, 0) + (performance.now() - started)
    expect(slowest, `slowest ping ${slowest.toFixed(1)} ms of ${total.toFixed(1)} ms of parsing`).to.be.below(total / 3)
  })
})
