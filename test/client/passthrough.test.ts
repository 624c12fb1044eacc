import {expect} from 'chai'

import {afterDashDash} from '../../src/client/passthrough.js'

describe('afterDashDash', () => {
  it('keeps what follows the first -- in order, repeated tokens included', () => {
    expect(afterDashDash(['-c', 'repo', '--', 'sh', '-c', 'sh', 'x'])).to.deep.equal(['sh', '-c', 'sh', 'x'])
  })

  it('keeps a second -- and flags after the first', () => {
    expect(afterDashDash(['--backend', 'gvisor', '--', 'npm', '--json', '--', '--model', 'x'])).to.deep.equal(['npm', '--json', '--', '--model', 'x'])
  })

  it('gives nothing without a --, or with nothing after it', () => {
    expect(afterDashDash(['--json', 'ls'])).to.deep.equal([])
    expect(afterDashDash(['ls', '--'])).to.deep.equal([])
  })
})
