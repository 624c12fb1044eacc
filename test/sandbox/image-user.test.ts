import {expect} from 'chai'

import {CleanroomError} from '../../src/errors/index.js'
import {imageEnv} from '../../src/sandbox/image-root.js'
import {parseGroup, parsePasswd, resolveImageUser, sandboxAccounts} from '../../src/sandbox/image-user.js'

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\n# a comment\nbroken:x:zz:1::/:/bin/sh\napp:x:4321:4300:app:/home/app:/bin/sh\nnode:x:1000:1000::/home/node:/bin/bash\n'
const GROUP = 'root:x:0:\nstaff:x:50:\napp:x:4300:\n'

describe("an image's User inside the sandbox", () => {
  const passwd = parsePasswd(PASSWD)
  const group = parseGroup(GROUP)
  const user = (spec: string | undefined) => resolveImageUser(spec, passwd, group)

  it('resolves names and ids as Docker does; no User is the sandbox user (1000), named by the image when it has one', () => {
    expect(user(undefined)).to.deep.equal({uid: 1000, gid: 1000, name: 'node'})
    expect(resolveImageUser('', [], [])).to.deep.equal({uid: 1000, gid: 1000, name: 'cleanroom'})
    expect(user('app')).to.deep.equal({uid: 4321, gid: 4300, name: 'app'})
    expect(user('root')).to.deep.equal({uid: 0, gid: 0, name: 'root'})
    expect(user('4321')).to.deep.equal({uid: 4321, gid: 4300, name: 'app'})
    expect(user('777')).to.deep.equal({uid: 777, gid: 0, name: 'cleanroom'})
    expect(user('app:staff')).to.deep.equal({uid: 4321, gid: 50, name: 'app'})
    expect(user('777:88')).to.deep.equal({uid: 777, gid: 88, name: 'cleanroom'})
  })

  it('refuses a name the image does not have and an id out of range, naming the User', () => {
    for (const [spec, why] of [
      ['ghost', 'no user "ghost"'],
      ['app:ghosts', 'no group "ghosts"'],
      ['broken', 'no user "broken"'],
      ['4294967295', 'is not a user or group id'],
      ['1:99999999999', 'is not a user or group id'],
    ] as const) {
      const error = (() => {
        try {
          return user(spec)
        } catch (caught) {
          return caught
        }
      })()
      expect(error, spec).to.be.instanceOf(CleanroomError)
      expect((error as CleanroomError).code).to.equal('image_invalid')
      expect((error as CleanroomError).message).to.contain(`User ${JSON.stringify(spec)}`).and.contain(why)
    }
  })

  it("keeps the image's accounts byte for byte and adds the workload's only when missing", () => {
    expect(sandboxAccounts(PASSWD, GROUP, {uid: 4321, gid: 4300, name: 'app'})).to.deep.equal({passwd: PASSWD, group: GROUP})
    const added = sandboxAccounts('root:x:0:0::/root:/bin/sh', 'root:x:0:', {uid: 1000, gid: 1000, name: 'cleanroom'})
    expect(added.passwd).to.equal('root:x:0:0::/root:/bin/sh\ncleanroom:x:1000:1000:cleanroom:/home/cleanroom:/bin/sh\n')
    expect(added.group).to.equal('root:x:0:\ncleanroom:x:1000:\n')
    const none = sandboxAccounts(undefined, undefined, {uid: 1000, gid: 1000, name: 'cleanroom'})
    expect(parsePasswd(none.passwd).map((entry) => entry.name)).to.deep.equal(['root', 'nobody', 'cleanroom'])
  })

  it("takes the image's Env as variables, leaving out HOME and entries that name none", () => {
    expect(imageEnv(['PATH=/usr/bin:/bin', 'A=1=2', 'HOME=/root', '=x', 'NOEQUALS', 'B=', 'BAD NAME=1'])).to.deep.equal({PATH: '/usr/bin:/bin', A: '1=2', B: ''})
  })
})
