import {expect} from 'chai'

import {CleanroomError} from '../../src/errors/index.js'
import {DEFAULT_POLICY, recompilePolicy, withImage} from '../../src/policy/compile.js'
import {requireCapabilities} from '../../src/sandbox/capabilities.js'
import type {Capabilities} from '../../src/sandbox/types.js'
import {GvisorBackend} from '../../src/sandbox/backends/gvisor/index.js'
import {LinuxNsBackend} from '../../src/sandbox/backends/linux-ns/index.js'

const DIGEST = `sha256:${'b'.repeat(64)}`

function caught(run: () => unknown): CleanroomError {
  try {
    run()
  } catch (error) {
    expect(error).to.be.instanceOf(CleanroomError)
    return error as CleanroomError
  }
  return expect.fail('expected a refusal')
}

describe("a sandbox's image in its policy", () => {
  it('--image replaces the policy image with a digest-pinned one and reseals the policy', () => {
    const policy = withImage(DEFAULT_POLICY, `127.0.0.1:5000/acme/base@${DIGEST}`)
    expect(policy).to.include({image_ref: `127.0.0.1:5000/acme/base@${DIGEST}`, image_digest: DIGEST})
    expect(policy.hash).not.to.equal(DEFAULT_POLICY.hash)
    expect(recompilePolicy(policy).hash).to.equal(policy.hash)
  })

  it('refuses a tag (the CLI resolves tags before asking the daemon)', () => {
    const error = caught(() => withImage(DEFAULT_POLICY, 'ghcr.io/acme/base:1.2'))
    expect(error.code).to.equal('image_ref_invalid')
    expect(error.message).to.contain('not digest-pinned')
  })

  it('linux-ns and gvisor run images; a backend that cannot still fails closed', () => {
    const policy = withImage(DEFAULT_POLICY, `ghcr.io/acme/base@${DIGEST}`)
    const gvisor = new GvisorBackend({runsc_path: 'runsc', platform: 'systrap'}).capabilities()
    expect(gvisor['images.oci']).to.equal(true)
    requireCapabilities('gvisor', policy, gvisor)
    const capabilities = new LinuxNsBackend({bwrap_path: 'bwrap'}).capabilities()
    expect(capabilities['images.oci']).to.equal(true)
    requireCapabilities('linux-ns', policy, capabilities)
    const without: Capabilities = {...capabilities, 'images.oci': false}
    const error = caught(() => requireCapabilities('other', policy, without))
    expect(error.code).to.equal('backend_capability_mismatch')
    expect(error.message).to.equal('backend other cannot enforce this policy: it lacks images.oci (sandbox.image.ref)')
  })
})
