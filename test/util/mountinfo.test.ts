import {expect} from 'chai'

import {parseMountinfo} from '../../src/util/mountinfo.js'

describe('parseMountinfo', () => {
  it('reads device, root, mount point, type and super options, with optional fields and escaped paths', () => {
    const text = [
      '22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard',
      '140 133 0:24 /cleanroom-gvisor/bin-0123 /run/cleanroom/bin ro,relatime - tmpfs tmpfs rw,mode=755',
      '141 22 254:0 /home/a\\040b /mnt/tab\\011here rw master:3 shared:7 - ext4 /dev/vda rw',
      'not a mountinfo line',
      '',
    ].join('\n')
    expect(parseMountinfo(text)).to.deep.equal([
      {device: '254:0', root: '/', mountPoint: '/', fsType: 'ext4', superOptions: 'rw,discard'},
      {device: '0:24', root: '/cleanroom-gvisor/bin-0123', mountPoint: '/run/cleanroom/bin', fsType: 'tmpfs', superOptions: 'rw,mode=755'},
      {device: '254:0', root: '/home/a b', mountPoint: '/mnt/tab\there', fsType: 'ext4', superOptions: 'rw'},
    ])
  })
})
