import {resourcesSetting} from '../../../config/parse-resources.js'
import {choiceSetting, programSetting} from '../../../config/settings.js'
import type {BackendDescriptor} from '../descriptor.js'

/** How runsc intercepts system calls. KVM is left out: on these machines (PVM only) it hangs. */
export const GVISOR_PLATFORMS = ['systrap', 'ptrace'] as const
export type GvisorPlatform = (typeof GVISOR_PLATFORMS)[number]

export const GVISOR_SETTINGS = {
  runsc_path: programSetting('runsc', 'runsc binary: a name looked up on PATH or an absolute path.'),
  platform: choiceSetting(GVISOR_PLATFORMS, 'systrap', 'systrap (works without KVM, the faster one) or ptrace.'),
  resources: resourcesSetting(),
}

export const GVISOR = {
  summary: 'gVisor user-space kernel (Debian package: runsc, from bookworm-backports on Debian 12; needs a root daemon).',
  settings: GVISOR_SETTINGS,
  capabilities: {
    'network.default_deny': true,
    'network.allowlist_egress': true,
    'sandbox.persistent': true,
    'exec.tty': true,
    'files.copy': true,
    'dns_control_or_equivalent': true,
    'images.oci': true,
    // Set while cgroups can be used here (a root daemon): GvisorBackend.capabilities().
    'resources.cpu': false,
    'resources.memory': false,
    'resources.disk': false,
    'services.docker': false,
    'policy.stages': false,
    'policy.run_before': false,
    'repository.checkout': false,
    'expose.https': false,
  },
} satisfies BackendDescriptor<typeof GVISOR_SETTINGS>
