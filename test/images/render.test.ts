import {expect} from 'chai'

import {formatBytes, PullProgress} from '../../src/images/render.js'

const LAYER_A = `sha256:${'a'.repeat(64)}`
const LAYER_B = `sha256:${'b'.repeat(64)}`

function progress(terminal: boolean): {out: string[]; progress: PullProgress} {
  const out: string[] = []
  const progress = new PullProgress({write: (text: string) => out.push(text)}, terminal)
  progress.update({type: 'resolved', ref: 'r/x:1', digest: `sha256:${'c'.repeat(64)}`, image_id: `sha256:${'d'.repeat(64)}`, layers: [{digest: LAYER_A, size: 2000}, {digest: LAYER_B, size: 500}]})
  progress.update({type: 'layer', digest: LAYER_A, status: 'downloading', current: 0, total: 2000})
  progress.update({type: 'layer', digest: LAYER_A, status: 'downloading', current: 1000, total: 2000})
  progress.update({type: 'layer', digest: LAYER_A, status: 'done', current: 2000, total: 2000})
  return {out, progress}
}

describe('image pull progress', () => {
  it('draws one bar per layer on a terminal, redrawn in place', () => {
    const {out} = progress(true)
    expect(out[0]).to.equal(`resolved r/x:1 to sha256:${'c'.repeat(64)} (2 layers, 2.5 kB)\n`)
    expect(out[1]).to.equal(`\u001B[2K${LAYER_A.slice(0, 19)}  [........................]  ${'0 B/2.0 kB'.padEnd(21)}  downloading\n\u001B[2K${LAYER_B.slice(0, 19)}  [........................]  ${'0 B/500 B'.padEnd(21)}  downloading\n`)
    expect(out[2]).to.match(/^\u001B\[2A\u001B\[2Ksha256:aaaaaaaaaaaa {2}\[#{12}\.{12}\] {2}1\.0 kB\/2\.0 kB/)
    expect(out[3]).to.contain('[########################]  2.0 kB/2.0 kB')
  })

  it('prints plain lines when stderr is not a terminal: one when a layer starts, one when it is done', () => {
    const {out} = progress(false)
    expect(out.slice(1)).to.deep.equal([`${LAYER_A.slice(0, 19)}: downloading 2.0 kB\n`, `${LAYER_A.slice(0, 19)}: done 2.0 kB\n`])
  })

  it('writes sizes in decimal units', () => {
    expect([0, 999, 1000, 1_234_567, 3_000_000_000].map((bytes) => formatBytes(bytes))).to.deep.equal(['0 B', '999 B', '1.0 kB', '1.2 MB', '3.0 GB'])
  })
})
