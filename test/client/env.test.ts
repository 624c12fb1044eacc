import {expect} from 'chai'

import {parseCopyOperand} from '../../src/client/copy.js'
import {parseEnvFlags} from '../../src/client/env.js'
import {CleanroomError} from '../../src/errors/index.js'

describe('exec flags', () => {
  it('reads -e KEY=VALUE and passes -e KEY from the environment', () => {
    expect(parseEnvFlags(['A=1', 'B=x=y', 'EMPTY=', 'HOME_COPY'], {HOME_COPY: '/h'})).to.deep.equal({A: '1', B: 'x=y', EMPTY: '', HOME_COPY: '/h'})
  })

  for (const [flag, message] of [
    ['=1', 'invalid --env "=1": missing variable name'],
    ['1A=x', 'invalid --env "1A=x": "1A" is not a variable name'],
    ['UNSET_VAR', 'environment variable "UNSET_VAR" is not set'],
    ['A=\0', 'invalid --env "A=\\u0000": contains NUL'],
  ]) {
    it(`refuses -e ${JSON.stringify(flag)}`, () => {
      expect(() => parseEnvFlags([flag!], {})).to.throw(CleanroomError, message)
    })
  }

  it('tells sandbox paths from host paths in cp operands', () => {
    const id = 'cr_01JDQ6Z1V8K3M6C2T9X4N7B5PA'
    expect(parseCopyOperand(`${id}:/workspace/a`)).to.deep.equal({sandboxId: id, path: '/workspace/a'})
    expect(parseCopyOperand('./file:with:colons')).to.equal(undefined)
    expect(() => parseCopyOperand(`${id}:relative`)).to.throw(CleanroomError, 'must be absolute')
  })
})
