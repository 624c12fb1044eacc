import {expect} from 'chai'

import {ProtocolError} from '../../src/egress/head-reader.js'
import {RequestBody} from '../../src/egress/request-body.js'

/** What the proxy forwards of `pieces` (sent in that many reads), and whether the body ended. */
function cut(framing: ConstructorParameters<typeof RequestBody>[0], ...pieces: string[]): {forwarded: string; done: boolean} {
  const body = new RequestBody(framing)
  const forwarded = pieces.map((piece) => body.take(Buffer.from(piece, 'latin1')).toString('latin1')).join('')
  return {forwarded, done: body.done}
}

function refused(framing: ConstructorParameters<typeof RequestBody>[0], text: string): string {
  try {
    cut(framing, text)
  } catch (error) {
    expect(error).to.be.instanceOf(ProtocolError)
    return (error as ProtocolError).message
  }
  throw new Error(`${JSON.stringify(text)} was not refused`)
}

const CHUNKED = {kind: 'chunked'} as const
const SMUGGLED = 'GET http://denied.test/ HTTP/1.1\r\nHost: denied.test\r\n\r\n'

describe('request bodies as the proxy forwards them', () => {
  it('forwards exactly Content-Length bytes, and nothing the client sends after them', () => {
    expect(cut({kind: 'length', length: 5}, 'hel', 'lo', SMUGGLED)).to.deep.equal({forwarded: 'hello', done: true})
    expect(cut({kind: 'length', length: 5}, `hello${SMUGGLED}`)).to.deep.equal({forwarded: 'hello', done: true})
    expect(cut({kind: 'length', length: 0}, SMUGGLED)).to.deep.equal({forwarded: '', done: true})
    expect(cut({kind: 'length', length: 6}, 'hello')).to.deep.equal({forwarded: 'hello', done: false})
  })

  it('frames chunks again, whatever the reads, dropping extensions and trailers, and stops at the last chunk', () => {
    const sent = `5;name="v"\r\nhello\r\nA \t; x\r\n0123456789\r\n0\r\nX-Trailer: t\r\n\r\n${SMUGGLED}`
    const expected = {forwarded: '5\r\nhello\r\na\r\n0123456789\r\n0\r\n\r\n', done: true}
    expect(cut(CHUNKED, sent)).to.deep.equal(expected)
    expect(cut(CHUNKED, ...sent.split(''))).to.deep.equal(expected)
    expect(cut(CHUNKED, '0\r\n\r\n', SMUGGLED)).to.deep.equal({forwarded: '0\r\n\r\n', done: true})
    expect(cut(CHUNKED, '00005\r\nhello\r\n')).to.deep.equal({forwarded: '5\r\nhello\r\n', done: false})
  })

  it('refuses a chunked body that could be read two ways', () => {
    for (const bad of [
      '5\nhello\r\n0\r\n\r\n',
      '5\r\nhelloXX0\r\n\r\n',
      '5\r\nhello\n0\r\n\r\n',
      'x5\r\nhello\r\n',
      '0x5\r\nhello\r\n',
      '-5\r\nhello\r\n',
      ' 5\r\nhello\r\n',
      '5 5\r\nhello\r\n',
      '5\r\r\nhello\r\n',
      '5;a\u0000b\r\nhello\r\n',
      '5;a\rb\r\nhello\r\n',
      'fffffffffffffff\r\n',
      '0\r\nTransfer-Encoding : chunked\r\n\r\n',
      '0\r\n folded\r\n\r\n',
    ]) {
      expect(refused(CHUNKED, bad), JSON.stringify(bad)).to.match(/^malformed chunked body: /)
    }
  })

  it('bounds a chunk-size line and the trailers, however they arrive', () => {
    expect(refused(CHUNKED, `1;${'x'.repeat(5000)}`)).to.include('longer than 4096 bytes')
    expect(refused(CHUNKED, `0\r\n${'X-T: v\r\n'.repeat(3000)}`)).to.include('larger than 16 KiB')
  })
})
