import {expect} from 'chai'

import {type BackendName, DEFAULT_RUNTIME_CONFIG} from '../../src/config/schema.js'
import type {SandboxBackend} from '../../src/sandbox/backend.js'
import {createBackends} from '../../src/sandbox/backends/index.js'

/** Every backend the conformance suites run against: each must pass all of them. */
export const BACKENDS = ['linux-ns', 'gvisor'] as const satisfies readonly BackendName[]

/** A backend as the daemon makes it, with the default settings. */
export function backendNamed(name: BackendName): SandboxBackend {
  return createBackends(DEFAULT_RUNTIME_CONFIG).get(name)!
}

/** Fails (never skips) when this machine cannot run `name`, saying what is missing and the fix (.ci/run installs what CI needs). */
export async function requireBackend(name: BackendName): Promise<void> {
  const availability = await backendNamed(name).availability()
  expect(availability.ok, `the ${name} backend cannot run on this machine: ${availability.problem} (fix: ${availability.fix})`).to.equal(true)
}
