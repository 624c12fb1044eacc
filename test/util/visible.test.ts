import {expect} from 'chai'
import {Readable} from 'node:stream'
import {text} from 'node:stream/consumers'

import {renderAuditEvent} from '../../src/client/render.js'
import {CleanroomError} from '../../src/errors/index.js'
import {renderError} from '../../src/errors/render.js'
import {visibleJson, visibleName, visibleStream, visibleText} from '../../src/util/visible.js'

/** Anything a terminal acts on rather than shows: C0, DEL, C1, bidi and zero-width format characters, line separators. */
const ACTIVE = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]/u

describe('terminal-safe strings', () => {
  it('escapes escape sequences, C1 controls and bidi overrides in names', () => {
    expect(visibleName('a\u001b[2K\u001b[1Ab')).to.equal('a\\x1b[2K\\x1b[1Ab')
    expect(visibleName('x\u009b31m')).to.equal('x\\x9b31m')
    expect(visibleName('invoice\u202egpj.exe')).to.equal('invoice\\u{202e}gpj.exe')
    expect(visibleName('line\nnext\ttab\rback\u0007')).to.equal('line\\nnext\\ttab\\rback\\x07')
  })

  it('escapes the backslash in names, so an escape always means the character', () => {
    expect(visibleName('a\\x1b')).to.equal('a\\\\x1b')
    expect(visibleName('plain/path with spaces/été.txt')).to.equal('plain/path with spaces/été.txt')
  })

  it('keeps newlines and tabs in texts', () => {
    expect(visibleText('first\n\tsecond\u001b]0;title\u0007')).to.equal('first\n\tsecond\\x1b]0;title\\x07')
  })

  it('escapes in JSON what JSON leaves raw, and the JSON still means the same', () => {
    const value = {path: 'a\u009b31m\u202eb\u001b[2K'}
    const json = visibleJson(JSON.stringify(value))
    expect(json).not.to.match(ACTIVE)
    expect(json).to.equal('{"path":"a\\u009b31m\\u202eb\\u001b[2K"}')
    expect(JSON.parse(json)).to.deep.equal(value)
  })

  it('decodes a stream whole across chunk boundaries', async () => {
    const bytes = Buffer.from('é\u001b[31m\n')
    const out = await text(Readable.from([bytes.subarray(0, 1), bytes.subarray(1, 4), bytes.subarray(4)]).pipe(visibleStream()))
    expect(out).to.equal('é\\x1b[31m\n')
  })

  it('is applied to every error the CLI prints', () => {
    const rendered = renderError(new CleanroomError('bad_request', 'refusing \u001b[2Kname\nsecond \u009b line', {suggestions: ['rm \u001b[8m']}))
    expect(rendered).not.to.match(ACTIVE)
    expect(rendered).to.equal('Error: refusing \\x1b[2Kname\n  second \\x9b line\nTry this: rm \\x1b[8m\n')
  })

  it('is applied to host names in egress logs', () => {
    const line = renderAuditEvent({
      time: '2026-01-01T00:00:00.000Z',
      sandbox_id: 'cr_x',
      host: 'evil\u001b[2K\u001b[1Aexample.com',
      port: 443,
      resolved_ip: null,
      action: 'deny',
      reason: 'invalid_host',
      bytes_up: 0,
      bytes_down: 0,
      duration_ms: 1,
      protocol: 'socks5',
    })
    expect(line).not.to.match(ACTIVE)
    expect(line).to.contain('evil\\x1b[2K\\x1b[1Aexample.com:443')
  })
})
