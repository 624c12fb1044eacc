import {expect} from 'chai'
import {appendFile, readFile, stat, writeFile} from 'node:fs/promises'
import {join} from 'node:path'

import {type AuditEvent, AuditLog, AuditLogError, auditCounts, readAudit} from '../../src/egress/audit.js'
import {tempDirs} from '../helpers/tmp.js'

function event(overrides: Partial<AuditEvent> = {}): AuditEvent {
  return {
    time: '2025-01-02T03:04:05.006Z',
    sandbox_id: 'sbx-1',
    host: 'api.github.com',
    port: 443,
    resolved_ip: '140.82.112.6',
    action: 'allow',
    reason: 'allowed_by_rule',
    rule: 'api.github.com',
    bytes_up: 517,
    bytes_down: 4096,
    duration_ms: 120,
    protocol: 'connect',
    ...overrides,
  }
}

async function collect(events: AsyncIterable<AuditEvent>): Promise<AuditEvent[]> {
  const all: AuditEvent[] = []
  for await (const one of events) all.push(one)
  return all
}

describe('egress audit log', () => {
  const dirs = tempDirs('cleanroom-audit-')
  const logs: AuditLog[] = []

  afterEach(async () => {
    await Promise.all(logs.splice(0).map((log) => log.close().catch(() => undefined)))
    await dirs.cleanup()
  })

  async function openLog(): Promise<AuditLog> {
    const log = await AuditLog.open(join(await dirs.make(), 'state', 'egress.jsonl'))
    logs.push(log)
    return log
  }

  it('appends one JSON line per event, in order, readable back', async () => {
    const log = await openLog()
    const denied = event({host: 'evil.example.com', action: 'deny', reason: 'host_not_allowed', resolved_ip: null, bytes_up: 0, bytes_down: 0})
    log.record(event())
    log.record(denied)
    await log.flush()

    const lines = (await readFile(log.path, 'utf8')).split('\n')
    expect(lines).to.have.length(3)
    expect(lines[2]).to.equal('')
    expect(JSON.parse(lines[0] ?? '')).to.deep.equal(event())
    expect(await collect(readAudit(log.path))).to.deep.equal([event(), denied])
    expect(await auditCounts(log.path)).to.deep.equal({allowed: 1, denied: 1})
  })

  it('is private to the user and only ever appended to', async () => {
    const log = await openLog()
    log.record(event())
    await log.close()
    logs.pop()
    const again = await AuditLog.open(log.path)
    logs.push(again)
    again.record(event({port: 80}))
    await again.flush()
    expect((await collect(readAudit(log.path))).map((one) => one.port)).to.deep.equal([443, 80])
    expect((await stat(log.path)).mode & 0o777).to.equal(0o600)
  })

  it('has no events before the first connection', async () => {
    const path = join(await dirs.make(), 'missing.jsonl')
    expect(await collect(readAudit(path))).to.deep.equal([])
    expect(await auditCounts(path)).to.deep.equal({allowed: 0, denied: 0})
  })

  it('does not read a line that is still being written', async () => {
    const path = join(await dirs.make(), 'egress.jsonl')
    await writeFile(path, `${JSON.stringify(event())}\n{"time":"2025`)
    expect(await collect(readAudit(path))).to.have.length(1)
  })

  it('refuses a line that is not an event, naming the line', async () => {
    const path = join(await dirs.make(), 'egress.jsonl')
    await writeFile(path, `${JSON.stringify(event())}\n{"time": 1}\n`)
    try {
      await collect(readAudit(path))
      expect.fail('expected an AuditLogError')
    } catch (error) {
      expect(error).to.be.instanceOf(AuditLogError)
      expect((error as Error).message).to.equal(`${path}:2: not an egress audit event`)
    }
  })

  it('follows the log as lines are appended, until aborted', async () => {
    const path = join(await dirs.make(), 'egress.jsonl')
    const controller = new AbortController()
    const seen: number[] = []
    const following = (async () => {
      for await (const one of readAudit(path, {follow: true, signal: controller.signal})) {
        seen.push(one.port)
        if (seen.length === 3) controller.abort()
      }
    })()
    await writeFile(path, `${JSON.stringify(event({port: 1}))}\n`)
    await new Promise((resolve) => setTimeout(resolve, 300))
    // A line written in two pieces is read once it is complete.
    const second = JSON.stringify(event({port: 2}))
    await appendFile(path, second.slice(0, 10))
    await new Promise((resolve) => setTimeout(resolve, 300))
    await appendFile(path, `${second.slice(10)}\n${JSON.stringify(event({port: 3}))}\n`)
    await following
    expect(seen).to.deep.equal([1, 2, 3])
  })
})
